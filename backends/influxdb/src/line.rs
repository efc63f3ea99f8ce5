//! Line protocol in nagflux's schema: how one [`SeriesBatch`] becomes lines of text, with
//! complete escaping and the reversible mapping of tag values a server cannot hold.
//!
//! Owns the schema (measurement `metrics`; tags `host`, `service`, `performanceLabel`, `unit`;
//! float fields `value`, `warn`, `crit`, `min`, `max`; timestamps in seconds), the two tag-escaping dialects
//! ([`TagEscaping`]), the trailing-backslash mapping ([`map_tag_value`], [`unmap_tag_value`])
//! and [`LineError`]. Guarantees: a series is encoded whole or refused whole (never half); no
//! name can end a line or break out of its tag; every value is written so the server types it
//! float; the same series always encodes to the same bytes.
//!
//! # The schema, and where it follows nagflux
//!
//! nagflux (`PerformanceData.PrintForInfluxDB`) writes
//! `metrics,host=H,service=S,command=C,performanceLabel=L[,unit=U] value=V,warn=…,crit=… T`,
//! leaving `unit` out when the unit is empty. perfpipe writes the same measurement and tags
//! except `command` (check results as masters send them do not carry the command), leaves
//! `unit` out when empty the same way, and writes the fields nagflux writes:
//!
//! * `value`;
//! * `warn` and `crit` when the threshold is the plain form `N` (`0:N`, alert outside), which
//!   is how nearly every plugin prints them; any other range (`10:20`, `~:5`, `20:`, `@0:10`) is
//!   written as `warn-min`/`warn-max` (`crit-min`/`crit-max`) with its finite bounds, as
//!   nagflux does. nagflux's `warn-fill` tag (inside/outside) is not written: a tag would split
//!   the series in two when a threshold changes form, so `@` ranges read like plain ranges;
//! * `min` and `max` when the metric gives them.
//!
//! A field appears only when the perfdata had it, with the levels in force at the point's time
//! ([`SeriesBatch::points_with_levels`]). nagflux escapes only spaces and commas and writes the
//! unit unescaped; perfpipe escapes everything the protocol needs (below).
//!
//! # Escaping dialects
//!
//! Servers disagree on backslashes in tag values, so the dialect is chosen per server:
//!
//! * [`TagEscaping::InfluxDb`] — InfluxDB's own parser (1.x; 2.x OSS shares its `models`
//!   code). It unescapes only `\,`, `\ ` and `\=` in tags; any other backslash is literal, so
//!   `\\` is stored as two backslashes. perfpipe writes backslashes as they are and puts one
//!   backslash before `,`, ` ` and `=`. That parser also refuses every tag value that ends in a
//!   backslash (it reads the separator after it as escaped), however the backslash is written,
//!   so such values are mapped (next section).
//! * [`TagEscaping::Spec`] — the line-protocol specification as VictoriaMetrics (and InfluxDB 3)
//!   parse it: `\\` is one backslash. perfpipe writes `\` as `\\` and puts a backslash before
//!   `,`, ` ` and `=`. Every value can be held; nothing is mapped.
//!
//! # The trailing-backslash mapping (dialect `influxdb` only)
//!
//! A tag value that ends in `\` (Windows drive labels such as `C:\`) is stored with the mark
//! [`TRAILING_BACKSLASH_MARK`] (`~`) appended: `C:\` is stored as `C:\~`. To keep the mapping
//! reversible a value that already ends in `~` gets one more: `x~` is stored as `x~~`. Reading
//! back removes one trailing `~`. Values ending in anything else are stored unchanged. So
//! `unmap(map(v)) == v` for every `v`, two different values never share a stored form, and no
//! stored value ends in a backslash.

use std::borrow::Cow;
use std::fmt::Write as _;

use perfpipe_backend::{Levels, SeriesBatch};
use serde::Deserialize;

/// The measurement every point is written to (nagflux's).
pub const MEASUREMENT: &str = "metrics";
/// The only field written (nagflux's name for the measured value).
pub const VALUE_FIELD: &str = "value";
/// Appended to a tag value that ends in a backslash (or in this mark) under
/// [`TagEscaping::InfluxDb`]; removed again when reading.
pub const TRAILING_BACKSLASH_MARK: char = '~';

/// How tag values are escaped for the server at hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TagEscaping {
    /// InfluxDB's parser (1.x, and 2.x OSS): backslashes are literal except before `,`, ` `,
    /// `=`; values ending in a backslash are mapped with [`TRAILING_BACKSLASH_MARK`].
    #[default]
    InfluxDb,
    /// The line-protocol specification (VictoriaMetrics, InfluxDB 3): `\\` is one backslash;
    /// every value is stored as it is.
    Spec,
}

/// Why a series cannot be written as line protocol. The series is refused whole; the other
/// series of the batch are unaffected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineError {
    /// A name holds a line break, which would end the line.
    #[error("{tag} {value:?} contains a line break, which line protocol cannot carry")]
    LineBreak {
        /// Which tag (`host`, `service`, `performanceLabel`, `unit`).
        tag: &'static str,
        /// The value as given.
        value: String,
    },
    /// An empty host, service or metric name (InfluxDB refuses empty tag values).
    #[error("empty {tag}: a tag value cannot be empty")]
    EmptyTag {
        /// Which tag.
        tag: &'static str,
    },
    /// A value that is NaN or infinite, which line protocol cannot express.
    #[error("value {value} at {timestamp} is not finite; line protocol has no NaN or infinity")]
    NonFinite {
        /// The point's timestamp.
        timestamp: i64,
        /// The value.
        value: f64,
    },
}

/// The form in which `value` is stored under `escaping`: unchanged, except that under
/// [`TagEscaping::InfluxDb`] a value ending in `\` or in [`TRAILING_BACKSLASH_MARK`] gets the
/// mark appended. Reversed by [`unmap_tag_value`].
pub fn map_tag_value(value: &str, escaping: TagEscaping) -> Cow<'_, str> {
    match escaping {
        TagEscaping::InfluxDb
            if value.ends_with('\\') || value.ends_with(TRAILING_BACKSLASH_MARK) =>
        {
            let mut mapped = String::with_capacity(value.len() + 1);
            mapped.push_str(value);
            mapped.push(TRAILING_BACKSLASH_MARK);
            Cow::Owned(mapped)
        }
        _ => Cow::Borrowed(value),
    }
}

/// The value a stored tag value stands for: the inverse of [`map_tag_value`].
pub fn unmap_tag_value(stored: &str, escaping: TagEscaping) -> Cow<'_, str> {
    match escaping {
        TagEscaping::InfluxDb => match stored.strip_suffix(TRAILING_BACKSLASH_MARK) {
            Some(original) => Cow::Borrowed(original),
            None => Cow::Borrowed(stored),
        },
        TagEscaping::Spec => Cow::Borrowed(stored),
    }
}

/// Appends `value` (already mapped) escaped as a tag key or value in `escaping`.
pub fn escape_tag(out: &mut String, value: &str, escaping: TagEscaping) {
    for c in value.chars() {
        match c {
            ',' | ' ' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '\\' if escaping == TagEscaping::Spec => out.push_str("\\\\"),
            _ => out.push(c),
        }
    }
}

/// Appends `name` escaped as a measurement (commas and spaces).
pub fn escape_measurement(out: &mut String, name: &str) {
    for c in name.chars() {
        if c == ',' || c == ' ' {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Appends a finite float so that every server types it float: Rust's shortest round-trip
/// form, always with a `.` or an exponent (`1.0`, `0.25`, `1e300`, `5e-324`), never `i`.
pub(crate) fn push_float(out: &mut String, value: f64) {
    // `{:?}` of an f64 is the shortest string that reads back to the same bits, with `.0`
    // on integral values and an exponent for very large or small magnitudes.
    let _ = write!(out, "{value:?}");
}

/// Appends `,name=value` for a finite value (an infinite bound is no bound).
fn push_field(out: &mut String, name: &str, value: Option<f64>) {
    if let Some(value) = value.filter(|value| value.is_finite()) {
        out.push(',');
        out.push_str(name);
        out.push('=');
        push_float(out, value);
    }
}

/// Appends the threshold and bound fields of the schema (see the module's doc).
fn push_levels(out: &mut String, levels: &Levels) {
    let thresholds = [
        (levels.warn, "warn", "warn-min", "warn-max"),
        (levels.crit, "crit", "crit-min", "crit-max"),
    ];
    for (threshold, plain, lower, upper) in thresholds {
        let Some(range) = threshold else { continue };
        match range.plain_limit() {
            Some(limit) => push_field(out, plain, Some(limit)),
            None => {
                push_field(out, lower, Some(range.start));
                push_field(out, upper, Some(range.end));
            }
        }
    }
    push_field(out, "min", levels.min);
    push_field(out, "max", levels.max);
}

fn check_tag(tag: &'static str, value: &str, may_be_empty: bool) -> Result<(), LineError> {
    if value.is_empty() && !may_be_empty {
        return Err(LineError::EmptyTag { tag });
    }
    if value.contains(['\n', '\r']) {
        return Err(LineError::LineBreak {
            tag,
            value: value.to_owned(),
        });
    }
    Ok(())
}

/// The part of every line of a series before the field: measurement and tags, escaped.
pub fn series_prefix(batch: &SeriesBatch, escaping: TagEscaping) -> Result<String, LineError> {
    let key = &batch.key;
    let tags: [(&'static str, &str); 4] = [
        ("host", &key.host),
        ("service", &key.service),
        ("performanceLabel", &key.metric),
        ("unit", &batch.uom),
    ];
    let mut prefix = String::with_capacity(64);
    escape_measurement(&mut prefix, MEASUREMENT);
    for (tag, value) in tags {
        let optional = tag == "unit";
        check_tag(tag, value, optional)?;
        if optional && value.is_empty() {
            continue;
        }
        prefix.push(',');
        escape_tag(&mut prefix, tag, escaping);
        prefix.push('=');
        escape_tag(&mut prefix, &map_tag_value(value, escaping), escaping);
    }
    Ok(prefix)
}

/// The lines of one series, each ending in `\n`, with where each line ends (so a long series
/// can be cut between lines).
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesLines {
    /// The text of all lines.
    pub text: String,
    /// Byte offset just past each line's `\n`, in order (one per point).
    pub line_ends: Vec<usize>,
}

/// Encodes every point of `batch`, or refuses the series whole.
pub fn encode_series(batch: &SeriesBatch, escaping: TagEscaping) -> Result<SeriesLines, LineError> {
    if let Some(point) = batch.points.iter().find(|point| !point.value.is_finite()) {
        return Err(LineError::NonFinite {
            timestamp: point.timestamp,
            value: point.value,
        });
    }
    let prefix = series_prefix(batch, escaping)?;
    let mut text = String::with_capacity(batch.points.len() * (prefix.len() + 32));
    let mut line_ends = Vec::with_capacity(batch.points.len());
    for (point, levels) in batch.points_with_levels() {
        text.push_str(&prefix);
        text.push(' ');
        text.push_str(VALUE_FIELD);
        text.push('=');
        push_float(&mut text, point.value);
        if let Some(levels) = levels {
            push_levels(&mut text, levels);
        }
        let _ = write!(text, " {}", point.timestamp);
        text.push('\n');
        line_ends.push(text.len());
    }
    Ok(SeriesLines { text, line_ends })
}

#[cfg(test)]
mod tests {
    use super::*;
    use perfpipe_backend::{DataSourceType, SeriesKey};
    use proptest::prelude::*;

    fn batch(
        host: &str,
        service: &str,
        metric: &str,
        uom: &str,
        points: &[(i64, f64)],
    ) -> SeriesBatch {
        let mut batch = SeriesBatch::new(SeriesKey::new(host, service, metric), uom, points);
        batch.ds_type = DataSourceType::Gauge;
        batch
    }

    #[test]
    fn a_series_is_written_in_nagfluxs_schema() {
        let lines = encode_series(
            &batch(
                "web1",
                "Disk",
                "C:\\ Used Space",
                "B",
                &[(1600000000, 1.0), (1600000060, 2.5)],
            ),
            TagEscaping::InfluxDb,
        )
        .unwrap();
        assert_eq!(
            lines.text,
            concat!(
                r"metrics,host=web1,service=Disk,performanceLabel=C:\\ Used\ Space,unit=B value=1.0 1600000000",
                "\n",
                r"metrics,host=web1,service=Disk,performanceLabel=C:\\ Used\ Space,unit=B value=2.5 1600000060",
                "\n",
            )
        );
        assert_eq!(lines.line_ends.len(), 2);
        assert_eq!(lines.line_ends[1], lines.text.len());
    }

    #[test]
    fn thresholds_and_bounds_are_fields_in_force_at_each_point() {
        use perfpipe_backend::ThresholdRange;
        let range = |start, end, inside| Some(ThresholdRange { start, end, inside });
        let mut series = batch("h", "s", "pl", "%", &[(10, 0.0), (20, 5.0), (30, 9.0)]);
        series.levels = vec![
            (
                10,
                Levels {
                    warn: range(0.0, 20.0, false),
                    crit: range(0.0, 60.0, false),
                    min: Some(0.0),
                    max: Some(100.0),
                },
            ),
            (
                30,
                Levels {
                    warn: range(10.0, f64::INFINITY, false),
                    crit: range(f64::NEG_INFINITY, 5.0, true),
                    min: None,
                    max: None,
                },
            ),
        ];
        let lines = encode_series(&series, TagEscaping::InfluxDb).unwrap();
        let fields: Vec<&str> = lines
            .text
            .lines()
            .map(|line| line.split(' ').nth(1).unwrap())
            .collect();
        assert_eq!(
            fields,
            [
                "value=0.0,warn=20.0,crit=60.0,min=0.0,max=100.0",
                "value=5.0,warn=20.0,crit=60.0,min=0.0,max=100.0",
                "value=9.0,warn-min=10.0,crit-max=5.0",
            ]
        );
    }

    #[test]
    fn an_empty_unit_is_left_out_like_nagflux_does() {
        let lines = encode_series(
            &batch("h", "s", "load1", "", &[(10, 0.5)]),
            TagEscaping::InfluxDb,
        )
        .unwrap();
        assert_eq!(
            lines.text,
            "metrics,host=h,service=s,performanceLabel=load1 value=0.5 10\n"
        );
    }

    #[test]
    fn influxdb_dialect_keeps_backslashes_and_escapes_separators() {
        let cases = [
            ("C:\\ Used Space", "C:\\\\ Used\\ Space"),
            ("a b", "a\\ b"),
            ("a,b", "a\\,b"),
            ("a=b", "a\\=b"),
            ("a\"b", "a\"b"),
            ("C:\\Windows", "C:\\Windows"),
            ("C:\\", "C:\\~"),
            ("\\", "\\~"),
            ("\\\\", "\\\\~"),
            ("x~", "x~~"),
            ("µs ☃", "µs\\ ☃"),
        ];
        for (value, written) in cases {
            let mut out = String::new();
            escape_tag(
                &mut out,
                &map_tag_value(value, TagEscaping::InfluxDb),
                TagEscaping::InfluxDb,
            );
            assert_eq!(out, written, "{value:?}");
        }
    }

    #[test]
    fn spec_dialect_doubles_backslashes_and_maps_nothing() {
        let cases = [
            ("C:\\ Used Space", "C:\\\\\\ Used\\ Space"),
            ("C:\\", "C:\\\\"),
            ("\\\\", "\\\\\\\\"),
            ("a=b,c d", "a\\=b\\,c\\ d"),
            ("x~", "x~"),
        ];
        for (value, written) in cases {
            let mut out = String::new();
            escape_tag(
                &mut out,
                &map_tag_value(value, TagEscaping::Spec),
                TagEscaping::Spec,
            );
            assert_eq!(out, written, "{value:?}");
        }
    }

    #[test]
    fn measurement_escapes_commas_and_spaces() {
        let mut out = String::new();
        escape_measurement(&mut out, "a b,c=d");
        assert_eq!(out, "a\\ b\\,c=d");
    }

    #[test]
    fn floats_are_always_floats() {
        let cases = [
            (1.0, "1.0"),
            (-0.0, "-0.0"),
            (0.1, "0.1"),
            (1e300, "1e300"),
            (1.5e-7, "1.5e-7"),
            (5e-324, "5e-324"),
            (123456789.0, "123456789.0"),
        ];
        for (value, written) in cases {
            let mut out = String::new();
            push_float(&mut out, value);
            assert_eq!(out, written);
            assert_eq!(out.parse::<f64>().unwrap().to_bits(), value.to_bits());
        }
    }

    #[test]
    fn line_breaks_empty_names_and_non_finite_values_are_refused() {
        let error = encode_series(
            &batch("h", "s", "a\nb", "", &[(1, 1.0)]),
            TagEscaping::InfluxDb,
        )
        .unwrap_err();
        assert_eq!(
            error,
            LineError::LineBreak {
                tag: "performanceLabel",
                value: "a\nb".into()
            }
        );
        let error =
            encode_series(&batch("h", "s", "m", "\r", &[(1, 1.0)]), TagEscaping::Spec).unwrap_err();
        assert!(matches!(error, LineError::LineBreak { tag: "unit", .. }));
        let error =
            encode_series(&batch("", "s", "m", "", &[(1, 1.0)]), TagEscaping::Spec).unwrap_err();
        assert_eq!(error, LineError::EmptyTag { tag: "host" });
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let error = encode_series(
                &batch("h", "s", "m", "", &[(1, 1.0), (2, bad)]),
                TagEscaping::InfluxDb,
            )
            .unwrap_err();
            assert!(
                matches!(error, LineError::NonFinite { timestamp: 2, .. }),
                "{error}"
            );
        }
    }

    /// Reads an escaped tag value back the way InfluxDB 1.x does: the value ends at the first
    /// `,` or ` ` not directly after a backslash; then `\,`, `\ ` and `\=` lose the backslash.
    fn influxdb1_read_tag(written: &str) -> Option<String> {
        let bytes = written.as_bytes();
        for i in 0..bytes.len() {
            if (bytes[i] == b',' || bytes[i] == b' ') && (i == 0 || bytes[i - 1] != b'\\') {
                return None; // the value would end early
            }
        }
        if written.ends_with('\\') {
            return None; // InfluxDB 1.x: invalid tag format
        }
        let mut value = written.to_owned();
        for code in [",", " ", "="] {
            value = value.replace(&format!("\\{code}"), code);
        }
        Some(value)
    }

    /// Reads an escaped tag value back the way the specification (VictoriaMetrics) does.
    fn spec_read_tag(written: &str) -> Option<String> {
        let mut value = String::new();
        let mut chars = written.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(next @ (',' | ' ' | '=' | '\\')) => value.push(next),
                    Some(next) => {
                        value.push('\\');
                        value.push(next);
                    }
                    None => value.push('\\'),
                },
                ',' | ' ' => return None,
                _ => value.push(c),
            }
        }
        Some(value)
    }

    proptest! {
        #[test]
        fn mapping_is_reversible_and_never_ends_in_a_backslash(value in "[a-z\\\\~ ,=\"µ]{0,12}") {
            let mapped = map_tag_value(&value, TagEscaping::InfluxDb);
            prop_assert!(!mapped.ends_with('\\'));
            prop_assert_eq!(unmap_tag_value(&mapped, TagEscaping::InfluxDb), value.as_str());
            prop_assert_eq!(map_tag_value(&value, TagEscaping::Spec), value.as_str());
        }

        #[test]
        fn every_value_survives_both_parsers(value in "[a-z\\\\~ ,=\"µ]{1,12}") {
            for (escaping, read) in [
                (TagEscaping::InfluxDb, influxdb1_read_tag as fn(&str) -> Option<String>),
                (TagEscaping::Spec, spec_read_tag),
            ] {
                let mut written = String::new();
                escape_tag(&mut written, &map_tag_value(&value, escaping), escaping);
                let stored = read(&written);
                prop_assert!(stored.is_some(), "{:?} written as {:?} is refused", value, written);
                let stored = stored.unwrap();
                prop_assert_eq!(unmap_tag_value(&stored, escaping), value.as_str());
            }
        }
    }
}
