//! InfluxDB line protocol bodies (what `POST /write` and `POST /api/v2/write` receive) to
//! perfpipe's points, and how a line's measurement, tags and fields become host, service and
//! metric.
//!
//! The syntax (escapes, quoted strings, `i` integers, `u` unsigned, booleans) is read by
//! InfluxDB IOx's parser (`influxdb-line-protocol`); this module owns the mapping, the
//! precision of timestamps and the accounting of what was not taken. Two shapes:
//!
//! - **nagflux** (what perfpipe's own InfluxDB backend and nagflux write): measurement
//!   `metrics` (`line_protocol.nagflux_measurement`) with tags `service` and
//!   `performanceLabel`: host from the host tag, service from `service`, metric from
//!   `performanceLabel`, unit from `unit`, the value from the field `value`, and the levels
//!   from the fields as perfpipe's InfluxDB backend writes them: `warn`/`crit` a plain
//!   threshold `N` (`0:N`), `warn-min`/`warn-max` (`crit-…`) the bounds of any other range
//!   (a missing bound infinite), `min` and `max`. So nagflux's lines keep their thresholds
//!   on their way through perfpipe to InfluxDB.
//! - **Telegraf** (every other line): host from the host tag (`line_protocol.host_tag`,
//!   default `host`); service the measurement, followed by `,key=value` for each other tag,
//!   sorted by key (`cpu,cpu=cpu0`, as the line's own series key reads); one series per
//!   numeric field, the field's key its metric. No unit.
//!
//! Integers and unsigned integers become floats (exact up to 2^53), booleans 1 and 0; string
//! fields are not stored and are reported as ignored with the reason. Guarantees: every line
//! that cannot be read, or has no host tag, is a [`BadLine`] naming its line number and why,
//! and the good lines around it are kept; nothing here panics on any input.

use std::collections::HashMap;

use influxdb_line_protocol::{FieldValue, ParsedLine};
use perfpipe_backend::{Levels, Point, SeriesKey, ThresholdRange};

use crate::enqueuer::SeriesPoints;

/// The unit of timestamps in a body (`precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
    Minutes,
    Hours,
}

/// Why a `precision` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("precision {given:?}: one of {allowed}")]
pub struct PrecisionError {
    pub given: String,
    pub allowed: &'static str,
}

impl Precision {
    /// InfluxDB 1.x's `precision`: `n`/`ns`, `u`/`us`, `ms`, `s`, `m`, `h`.
    pub fn v1(text: &str) -> Result<Precision, PrecisionError> {
        Ok(match text {
            "" | "n" | "ns" => Precision::Nanoseconds,
            "u" | "us" | "µ" => Precision::Microseconds,
            "ms" => Precision::Milliseconds,
            "s" => Precision::Seconds,
            "m" => Precision::Minutes,
            "h" => Precision::Hours,
            _ => {
                return Err(PrecisionError {
                    given: text.into(),
                    allowed: "n, ns, u, us, ms, s, m, h",
                })
            }
        })
    }

    /// InfluxDB 2.x's `precision`: `ns`, `us`, `ms`, `s`.
    pub fn v2(text: &str) -> Result<Precision, PrecisionError> {
        Ok(match text {
            "" | "ns" => Precision::Nanoseconds,
            "us" => Precision::Microseconds,
            "ms" => Precision::Milliseconds,
            "s" => Precision::Seconds,
            _ => {
                return Err(PrecisionError {
                    given: text.into(),
                    allowed: "ns, us, ms, s",
                })
            }
        })
    }

    /// Whole epoch seconds of a timestamp in this precision (fractions cut off towards the
    /// past), `None` when it does not fit.
    pub fn seconds(self, timestamp: i64) -> Option<i64> {
        match self {
            Precision::Nanoseconds => Some(timestamp.div_euclid(1_000_000_000)),
            Precision::Microseconds => Some(timestamp.div_euclid(1_000_000)),
            Precision::Milliseconds => Some(timestamp.div_euclid(1_000)),
            Precision::Seconds => Some(timestamp),
            Precision::Minutes => timestamp.checked_mul(60),
            Precision::Hours => timestamp.checked_mul(3_600),
        }
    }
}

/// How lines map onto series (`[line_protocol]` in the config).
#[derive(Debug, Clone)]
pub struct Mapping {
    /// The tag that names the host.
    pub host_tag: String,
    /// The measurement of nagflux's schema.
    pub nagflux_measurement: String,
    /// Bytes of a host, service or metric name at most.
    pub max_name_length: usize,
}

/// A line that was not taken.
#[derive(Debug, Clone, PartialEq)]
pub struct BadLine {
    /// 1-based line number in the body.
    pub line: usize,
    /// The line (its first 200 characters).
    pub text: String,
    /// Why.
    pub reason: String,
}

impl std::fmt::Display for BadLine {
    /// InfluxDB's wording, with the line number.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unable to parse '{}': {} (line {})",
            self.text, self.reason, self.line
        )
    }
}

/// A field that was read but not stored.
#[derive(Debug, Clone, PartialEq)]
pub struct IgnoredField {
    pub line: usize,
    pub field: String,
    pub reason: &'static str,
}

/// What a body held.
#[derive(Debug, Default)]
pub struct Read {
    /// Points per series, in first-seen order.
    pub series: Vec<SeriesPoints>,
    /// Lines read (not blank, not comments).
    pub lines: u64,
    /// Points taken.
    pub points: u64,
    pub bad: Vec<BadLine>,
    pub ignored: Vec<IgnoredField>,
}

fn shortened(line: &str) -> String {
    match line.char_indices().nth(200) {
        Some((end, _)) => format!("{}…", &line[..end]),
        None => line.to_owned(),
    }
}

/// Reads a whole body; lines without a timestamp get `now` (epoch seconds).
pub fn read(body: &str, precision: Precision, mapping: &Mapping, now: i64) -> Read {
    let mut read = Read::default();
    let mut index: HashMap<SeriesKey, usize> = HashMap::new();
    let mut line_number = 1;
    for raw in influxdb_line_protocol::split_lines(body) {
        let number = line_number;
        line_number += 1 + raw.matches('\n').count();
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let Some(parsed) = influxdb_line_protocol::parse_lines(line).next() else {
            continue; // blank or a comment
        };
        read.lines += 1;
        let bad = |reason: String| BadLine {
            line: number,
            text: shortened(line.trim()),
            reason,
        };
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err(error) => {
                read.bad.push(bad(error.to_string()));
                continue;
            }
        };
        let timestamp = match parsed.timestamp {
            None => now,
            Some(timestamp) => match precision.seconds(timestamp) {
                Some(seconds) => seconds,
                None => {
                    read.bad.push(bad(format!(
                        "timestamp {timestamp} out of range for precision {precision:?}"
                    )));
                    continue;
                }
            },
        };
        match points_of(&parsed, mapping, number, &mut read.ignored) {
            Ok(points) => {
                for (key, uom, value, levels) in points {
                    read.points += 1;
                    let position = *index.entry(key.clone()).or_insert_with(|| {
                        read.series.push(SeriesPoints {
                            key,
                            uom: uom.as_str().into(),
                            points: smallvec::SmallVec::new(),
                            levels: smallvec::SmallVec::new(),
                        });
                        read.series.len() - 1
                    });
                    let series = &mut read.series[position];
                    series.points.push(Point { timestamp, value });
                    if let Some(levels) = levels {
                        if series.levels.last().is_none_or(|(_, last)| *last != levels) {
                            series.levels.push((timestamp, levels));
                        }
                    }
                }
            }
            Err(reason) => read.bad.push(bad(reason)),
        }
    }
    read
}

/// One point of a line: its series, unit, value and (nagflux only) levels.
type LinePoint = (SeriesKey, String, f64, Option<Levels>);

/// The series, unit, value and (nagflux) levels of each point of one line.
fn points_of(
    line: &ParsedLine<'_>,
    mapping: &Mapping,
    number: usize,
    ignored: &mut Vec<IgnoredField>,
) -> Result<Vec<LinePoint>, String> {
    let measurement = line.series.measurement.as_str();
    let tag = |name: &str| line.tag_value(name).map(|value| value.as_str().to_owned());
    let host = tag(&mapping.host_tag).ok_or_else(|| {
        format!(
            "no host tag {:?} (line_protocol.host_tag)",
            mapping.host_tag
        )
    })?;
    let check = |key: SeriesKey| -> Result<SeriesKey, String> {
        for (part, name) in [
            ("host", &key.host),
            ("service", &key.service),
            ("metric", &key.metric),
        ] {
            if name.is_empty() {
                return Err(format!("empty {part} name"));
            }
            if name.len() > mapping.max_name_length {
                return Err(format!(
                    "{part} name longer than {} bytes (limits.max_name_length)",
                    mapping.max_name_length
                ));
            }
        }
        Ok(key)
    };
    if measurement == mapping.nagflux_measurement {
        if let (Some(service), Some(label)) = (tag("service"), tag("performanceLabel")) {
            let key = check(SeriesKey::new(host, service, label))?;
            let uom = tag("unit").unwrap_or_default();
            let value = line
                .field_value("value")
                .ok_or_else(|| "nagflux line without a value field".to_string())?;
            let value = number_of(value).map_err(|reason| format!("field value: {reason}"))?;
            return Ok(vec![(key, uom, value, Some(nagflux_levels(line)?))]);
        }
    }
    let mut service = measurement.to_owned();
    let mut tags: Vec<(&str, &str)> = line
        .series
        .tag_set
        .iter()
        .flatten()
        .filter(|(key, _)| key.as_str() != mapping.host_tag)
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    tags.sort_unstable();
    for (key, value) in tags {
        service.push(',');
        service.push_str(key);
        service.push('=');
        service.push_str(value);
    }
    let mut points = Vec::with_capacity(line.field_set.len());
    for (field, value) in &line.field_set {
        match number_of(value) {
            Ok(value) => {
                let key = check(SeriesKey::new(
                    host.clone(),
                    service.clone(),
                    field.as_str(),
                ))?;
                points.push((key, String::new(), value, None));
            }
            Err(reason) => ignored.push(IgnoredField {
                line: number,
                field: field.as_str().to_owned(),
                reason,
            }),
        }
    }
    Ok(points)
}

/// The levels of a nagflux line, from its threshold and bound fields.
fn nagflux_levels(line: &ParsedLine<'_>) -> Result<Levels, String> {
    let field = |name: &str| -> Result<Option<f64>, String> {
        match line.field_value(name) {
            None => Ok(None),
            Some(value) => number_of(value)
                .map(Some)
                .map_err(|reason| format!("field {name}: {reason}")),
        }
    };
    let threshold = |plain: &str, lower: &str, upper: &str| -> Result<_, String> {
        Ok(match (field(plain)?, field(lower)?, field(upper)?) {
            (Some(limit), _, _) => Some(ThresholdRange {
                start: 0.0,
                end: limit,
                inside: false,
            }),
            (None, None, None) => None,
            (None, start, end) => Some(ThresholdRange {
                start: start.unwrap_or(f64::NEG_INFINITY),
                end: end.unwrap_or(f64::INFINITY),
                inside: false,
            }),
        })
    };
    Ok(Levels {
        warn: threshold("warn", "warn-min", "warn-max")?,
        crit: threshold("crit", "crit-min", "crit-max")?,
        min: field("min")?,
        max: field("max")?,
    })
}

fn number_of(value: &FieldValue<'_>) -> Result<f64, &'static str> {
    match value {
        FieldValue::F64(value) => Ok(*value),
        FieldValue::I64(value) => Ok(*value as f64),
        FieldValue::U64(value) => Ok(*value as f64),
        FieldValue::Boolean(value) => Ok(if *value { 1.0 } else { 0.0 }),
        FieldValue::String(_) => Err("a string field: perfpipe stores numbers only"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping() -> Mapping {
        Mapping {
            host_tag: "host".into(),
            nagflux_measurement: "metrics".into(),
            max_name_length: 1024,
        }
    }

    fn values(read: &Read) -> Vec<(String, i64, f64)> {
        read.series
            .iter()
            .flat_map(|series| {
                series
                    .points
                    .iter()
                    .map(|point| (series.key.to_string(), point.timestamp, point.value))
            })
            .collect()
    }

    #[test]
    fn telegraf_lines() {
        let body = "cpu,cpu=cpu0,host=web01 usage_idle=98.2,usage_user=1.1 1700000000000000000\n\
                    cpu,host=web01,cpu=cpu1 usage_idle=50i 1700000000000000000\n\
                    mem,host=db01 used=123u,active=true,state=\"ok\" 1700000060000000000\n";
        let read = read(body, Precision::Nanoseconds, &mapping(), 0);
        assert!(read.bad.is_empty(), "{:?}", read.bad);
        assert_eq!(read.lines, 3);
        assert_eq!(read.points, 5);
        assert_eq!(
            values(&read),
            [
                (
                    "web01::cpu,cpu=cpu0::usage_idle".into(),
                    1_700_000_000,
                    98.2
                ),
                ("web01::cpu,cpu=cpu0::usage_user".into(), 1_700_000_000, 1.1),
                (
                    "web01::cpu,cpu=cpu1::usage_idle".into(),
                    1_700_000_000,
                    50.0
                ),
                ("db01::mem::used".into(), 1_700_000_060, 123.0),
                ("db01::mem::active".into(), 1_700_000_060, 1.0),
            ]
        );
        assert_eq!(
            read.ignored,
            [IgnoredField {
                line: 3,
                field: "state".into(),
                reason: "a string field: perfpipe stores numbers only"
            }]
        );
    }

    #[test]
    fn nagflux_lines_and_escapes() {
        let body = "metrics,host=web\\ 01,service=HTTP\\,S,performanceLabel=time,unit=s value=0.25,warn=1,crit=2 1700000000\n";
        let read = read(body, Precision::Seconds, &mapping(), 0);
        assert!(read.bad.is_empty(), "{:?}", read.bad);
        assert_eq!(
            values(&read),
            [("web 01::HTTP,S::time".into(), 1_700_000_000, 0.25)]
        );
        assert_eq!(read.series[0].uom, "s");
        let plain = |end: f64| ThresholdRange {
            start: 0.0,
            end,
            inside: false,
        };
        assert_eq!(
            read.series[0].levels[..],
            [(
                1_700_000_000,
                Levels {
                    warn: Some(plain(1.0)),
                    crit: Some(plain(2.0)),
                    min: None,
                    max: None
                }
            )]
        );
        // Ranges other than 0:N, bounds, and levels recorded only where they change.
        let body = "metrics,host=h,service=s,performanceLabel=l value=1,warn-min=10,crit-max=5,min=0,max=100 1\n\
                    metrics,host=h,service=s,performanceLabel=l value=2,warn-min=10,crit-max=5,min=0,max=100 2\n\
                    metrics,host=h,service=s,performanceLabel=l value=3 3\n";
        let read = super::read(body, Precision::Seconds, &mapping(), 0);
        assert!(read.bad.is_empty(), "{:?}", read.bad);
        let ranged = Levels {
            warn: Some(ThresholdRange {
                start: 10.0,
                end: f64::INFINITY,
                inside: false,
            }),
            crit: Some(ThresholdRange {
                start: f64::NEG_INFINITY,
                end: 5.0,
                inside: false,
            }),
            min: Some(0.0),
            max: Some(100.0),
        };
        assert_eq!(
            read.series[0].levels[..],
            [(1, ranged), (3, Levels::default())]
        );
        let read = super::read(
            "metrics,host=h,service=s,performanceLabel=l value=1,warn=\"x\" 1\n",
            Precision::Seconds,
            &mapping(),
            0,
        );
        assert!(read.bad[0].reason.contains("field warn"), "{:?}", read.bad);
        // `metrics` without nagflux's tags is a Telegraf line.
        let read = super::read(
            "metrics,host=h value=1 1\n",
            Precision::Seconds,
            &mapping(),
            0,
        );
        assert_eq!(values(&read), [("h::metrics::value".into(), 1, 1.0)]);
    }

    #[test]
    fn bad_lines_are_named_and_neighbours_kept() {
        let body = "cpu,host=a x=1 1\n\ncpu,host=a x= 2\n# a comment\ncpu x=3 3\ncpu,host=a x=4 4\r\ncpu,host=a x=\"s\" 5\n";
        let read = read(body, Precision::Seconds, &mapping(), 0);
        assert_eq!(
            values(&read),
            [("a::cpu::x".into(), 1, 1.0), ("a::cpu::x".into(), 4, 4.0)]
        );
        assert_eq!(read.lines, 5);
        let lines: Vec<usize> = read.bad.iter().map(|bad| bad.line).collect();
        assert_eq!(lines, [3, 5]);
        assert!(read.bad[1].reason.contains("no host tag"), "{:?}", read.bad);
        let text = read.bad[0].to_string();
        assert!(
            text.starts_with("unable to parse 'cpu,host=a x= 2': ") && text.ends_with("(line 3)"),
            "{text}"
        );
        assert_eq!(read.ignored.len(), 1);
    }

    #[test]
    fn precisions() {
        let one = |precision: Precision, timestamp: &str| {
            let read = read(
                &format!("m,host=h v=1 {timestamp}"),
                precision,
                &mapping(),
                0,
            );
            read.series.first().map(|series| series.points[0].timestamp)
        };
        assert_eq!(
            one(Precision::Nanoseconds, "1700000000999999999"),
            Some(1_700_000_000)
        );
        assert_eq!(
            one(Precision::Microseconds, "1700000000500000"),
            Some(1_700_000_000)
        );
        assert_eq!(
            one(Precision::Milliseconds, "1700000000999"),
            Some(1_700_000_000)
        );
        assert_eq!(one(Precision::Seconds, "1700000000"), Some(1_700_000_000));
        assert_eq!(one(Precision::Minutes, "28333333"), Some(1_699_999_980));
        assert_eq!(one(Precision::Hours, "472222"), Some(1_699_999_200));
        assert_eq!(one(Precision::Nanoseconds, "-1500000000"), Some(-2));
        assert_eq!(one(Precision::Hours, "9223372036854775807"), None);
        // No timestamp: now.
        let read = read("m,host=h v=1", Precision::Seconds, &mapping(), 42);
        assert_eq!(read.series[0].points[0].timestamp, 42);

        assert_eq!(Precision::v1("u"), Ok(Precision::Microseconds));
        assert_eq!(Precision::v1("h"), Ok(Precision::Hours));
        assert!(Precision::v2("h").is_err());
        assert_eq!(Precision::v2("us"), Ok(Precision::Microseconds));
        let error = Precision::v1("days").unwrap_err().to_string();
        assert!(error.contains("\"days\""), "{error}");
    }
}
