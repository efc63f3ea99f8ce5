//! [`InfluxBackend`]: the [`Backend`] that writes series as line protocol and reads them back
//! with InfluxQL.
//!
//! Owns batching (many series per body, bodies up to `batch_bytes`, a long series cut between
//! lines), the attribution of refusals to series, and the mapping of InfluxQL answers to
//! [`SeriesRange`]. Guarantees:
//!
//! * A series that cannot be encoded (line break in a name, empty name, NaN or infinity) is
//!   reported in [`WriteReport::failed`] and the others are written.
//! * When the server refuses a body with 400 or 413 (a parse error, a field-type conflict, a
//!   partial write, a body too large), each series of that body is sent again alone, so the
//!   refusal lands on the series that caused it, with the server's message and dropped count,
//!   and every other series is written. Writing a point twice is harmless: InfluxDB and
//!   VictoriaMetrics keep one value per series and timestamp.
//! * The whole call fails (`Err`) only when the server is unreachable or unavailable through
//!   every retry, or refuses the request itself (401, 403, 404: credentials, database, bucket).
//! * Reads (v1 only) return the values at `start + i * step` with `None` where nothing is
//!   stored, `step`-aligned buckets as InfluxQL's `GROUP BY time(step)` makes them.
//! * A rename (v1 only) rewrites every point of the old series, all fields and the unit, under
//!   the new tags, and drops the old series only once all are written.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use perfpipe_backend::{
    Backend, BackendError, Consolidation, RangeQuery, SeriesBatch, SeriesKey, SeriesRange,
    SeriesRename, WriteReport,
};

use crate::client::{Client, QueryAnswer};
use crate::config::{Api, ConfigError, InfluxConfig};
use crate::error::InfluxError;
use crate::line::{
    encode_series, escape_measurement, escape_tag, map_tag_value, push_float, TagEscaping,
    MEASUREMENT, VALUE_FIELD,
};

/// The step used when a read asks for none and the range holds fewer than two points.
pub const DEFAULT_READ_STEP: u32 = 60;
/// The most values one read returns.
pub const MAX_READ_VALUES: i64 = 10_000_000;
/// Rows a rename reads per query (for each InfluxDB series of the name: one per unit).
const RENAME_PAGE: usize = 10_000;

/// The InfluxDB (or VictoriaMetrics) backend.
#[derive(Debug)]
pub struct InfluxBackend {
    client: Client,
}

/// A run of whole lines of one series.
struct Chunk {
    series: usize,
    text: String,
    points: u64,
}

impl InfluxBackend {
    /// A backend for `config`, checked first. No request is made until the first write.
    pub fn new(config: InfluxConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(InfluxBackend {
            client: Client::new(config),
        })
    }

    fn escaping(&self) -> TagEscaping {
        self.client.config().tag_escaping
    }

    /// Cuts the encoded series into chunks of whole lines of at most `batch_bytes` (a single
    /// longer line is a chunk of its own).
    fn chunks(&self, batches: &[SeriesBatch], report: &mut WriteReport) -> Vec<Chunk> {
        let limit = self.client.config().batch_bytes;
        let mut chunks = Vec::new();
        for (series, batch) in batches.iter().enumerate() {
            let lines = match encode_series(batch, self.escaping()) {
                Ok(lines) => lines,
                Err(error) => {
                    tracing::warn!(series = %batch.key, %error, "series not written to influxdb");
                    report
                        .failed
                        .push((batch.key.clone(), InfluxError::from(error).into()));
                    continue;
                }
            };
            let mut start = 0;
            let mut points = 0u64;
            for &end in &lines.line_ends {
                if end - start > limit && points > 0 {
                    let cut = previous_end(&lines.line_ends, end);
                    chunks.push(Chunk {
                        series,
                        text: lines.text[start..cut].to_owned(),
                        points,
                    });
                    start = cut;
                    points = 0;
                }
                points += 1;
            }
            if points > 0 {
                chunks.push(Chunk {
                    series,
                    text: lines.text[start..].to_owned(),
                    points,
                });
            }
        }
        chunks
    }

    fn write_chunks(&self, batches: &[SeriesBatch]) -> Result<WriteReport, InfluxError> {
        let mut report = WriteReport::default();
        let chunks = self.chunks(batches, &mut report);
        let limit = self.client.config().batch_bytes;
        let mut refused: BTreeMap<usize, InfluxError> = BTreeMap::new();
        let mut body = String::new();
        let mut members: Vec<&Chunk> = Vec::new();
        for chunk in &chunks {
            if !members.is_empty() && body.len() + chunk.text.len() > limit {
                self.send(&body, &members, &mut report, &mut refused)?;
                body.clear();
                members.clear();
            }
            body.push_str(&chunk.text);
            members.push(chunk);
        }
        if !members.is_empty() {
            self.send(&body, &members, &mut report, &mut refused)?;
        }
        for (series, error) in refused {
            report
                .failed
                .push((batches[series].key.clone(), error.into()));
        }
        Ok(report)
    }

    /// Sends one body; on a refusal of its lines, sends each chunk alone to find which.
    fn send(
        &self,
        body: &str,
        members: &[&Chunk],
        report: &mut WriteReport,
        refused: &mut BTreeMap<usize, InfluxError>,
    ) -> Result<(), InfluxError> {
        match self.client.write(body) {
            Ok(()) => {
                report.written += members.iter().map(|chunk| chunk.points).sum::<u64>();
                Ok(())
            }
            Err(error) if refuses_lines(&error) && members.len() > 1 => {
                tracing::debug!(%error, chunks = members.len(), "body refused; sending its series one by one");
                for chunk in members {
                    self.send(&chunk.text, &[chunk], report, refused)?;
                }
                Ok(())
            }
            Err(error) if refuses_lines(&error) => {
                let chunk = members[0];
                if let InfluxError::PartialWrite {
                    dropped: Some(dropped),
                    ..
                } = error
                {
                    report.written += chunk.points.saturating_sub(dropped);
                }
                tracing::warn!(%error, "influxdb refused a series");
                refused.entry(chunk.series).or_insert(error);
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// The range, or `None` when the server holds no such series.
    fn read_range(
        &self,
        key: &SeriesKey,
        range: &RangeQuery,
    ) -> Result<Option<SeriesRange>, InfluxError> {
        let filter = self.series_filter(key);
        let time = format!("time >= {}s AND time < {}s", range.start, range.end);
        let step = match range.step {
            Some(0) => return Err(InfluxError::BadRange("step 0".into())),
            Some(step) => step,
            None => {
                let raw = self.client.query(&format!(
                    "SELECT \"{VALUE_FIELD}\" FROM \"{MEASUREMENT}\" WHERE {filter} AND {time}"
                ))?;
                finest_step(&rows(&raw))
            }
        };
        let function = match range.consolidation {
            Consolidation::Average => "mean",
            Consolidation::Min => "min",
            Consolidation::Max => "max",
        };
        let answer = self.client.query(&format!(
            "SELECT {function}(\"{VALUE_FIELD}\") FROM \"{MEASUREMENT}\" WHERE {filter} AND {time} \
             GROUP BY time({step}s) fill(none)"
        ))?;
        let rows = rows(&answer);
        if rows.is_empty() && !self.series_exists(&filter)? {
            return Ok(None);
        }
        to_range(range, step, &rows).map(Some)
    }

    /// Rewrites every point of `from` (every field, its `unit` tag as stored) under `to`'s
    /// tags, a page at a time in time order, then drops `from`'s series; answers the points
    /// rewritten. Points of `to` at the same times are replaced: InfluxDB keeps one value per
    /// series, time and field. A failure part way leaves `from` whole (it is dropped last);
    /// what was rewritten by then stays under `to`, and doing it again rewrites the same.
    fn rename_points(&self, from: &SeriesKey, to: &SeriesKey) -> Result<u64, InfluxError> {
        let escaping = self.escaping();
        let filter = self.series_filter(from);
        let limit = self.client.config().batch_bytes;
        let mut rewritten = 0u64;
        let mut body = String::new();
        let mut offset = 0;
        loop {
            let answer = self.client.query(&format!(
                "SELECT * FROM \"{MEASUREMENT}\" WHERE {filter} GROUP BY * ORDER BY time \
                 LIMIT {RENAME_PAGE} OFFSET {offset}"
            ))?;
            let mut full_page = false;
            for series in answer.results.iter().flat_map(|result| &result.series) {
                full_page |= series.values.len() >= RENAME_PAGE;
                let prefix = renamed_prefix(&series.tags, to, escaping);
                for row in &series.values {
                    let Some(time) = row.first().and_then(|time| time.as_i64()) else {
                        continue;
                    };
                    let start = body.len();
                    body.push_str(&prefix);
                    let mut separator = ' ';
                    for (field, value) in series.columns.iter().zip(row).skip(1) {
                        if let Some(value) = value.as_f64().filter(|value| value.is_finite()) {
                            body.push(separator);
                            escape_tag(&mut body, field, escaping);
                            body.push('=');
                            push_float(&mut body, value);
                            separator = ',';
                        }
                    }
                    if separator == ' ' {
                        // No field: nothing to write.
                        body.truncate(start);
                        continue;
                    }
                    let _ = writeln!(body, " {time}");
                    rewritten += 1;
                    if body.len() >= limit {
                        self.client.write(&body)?;
                        body.clear();
                    }
                }
            }
            if !full_page {
                break;
            }
            offset += RENAME_PAGE;
        }
        if !body.is_empty() {
            self.client.write(&body)?;
        }
        self.client.query(&format!(
            "DROP SERIES FROM \"{MEASUREMENT}\" WHERE {filter}"
        ))?;
        Ok(rewritten)
    }

    fn series_exists(&self, filter: &str) -> Result<bool, InfluxError> {
        let answer = self.client.query(&format!(
            "SHOW SERIES FROM \"{MEASUREMENT}\" WHERE {filter}"
        ))?;
        Ok(answer
            .results
            .iter()
            .any(|result| result.series.iter().any(|series| !series.values.is_empty())))
    }

    fn series_filter(&self, key: &SeriesKey) -> String {
        let escaping = self.escaping();
        let condition = |tag: &str, value: &str| {
            format!(
                "\"{tag}\" = '{}'",
                influxql_string(&map_tag_value(value, escaping))
            )
        };
        format!(
            "{} AND {} AND {}",
            condition("host", &key.host),
            condition("service", &key.service),
            condition("performanceLabel", &key.metric)
        )
    }
}

/// The measurement and tags of a line of `to`: the stored `tags` of a series of the old name,
/// with host, service and performance label replaced (mapped and escaped as written), the rest
/// (the unit) as stored, escaped again.
fn renamed_prefix(
    tags: &BTreeMap<String, String>,
    to: &SeriesKey,
    escaping: TagEscaping,
) -> String {
    let mut prefix = String::with_capacity(64);
    escape_measurement(&mut prefix, MEASUREMENT);
    for (tag, stored) in tags {
        let value = match tag.as_str() {
            "host" => map_tag_value(&to.host, escaping),
            "service" => map_tag_value(&to.service, escaping),
            "performanceLabel" => map_tag_value(&to.metric, escaping),
            _ => stored.as_str().into(),
        };
        if value.is_empty() {
            continue;
        }
        prefix.push(',');
        escape_tag(&mut prefix, tag, escaping);
        prefix.push('=');
        escape_tag(&mut prefix, &value, escaping);
    }
    prefix
}

/// Whether `error` refuses lines of the body (so another body might be accepted) rather than
/// the request itself.
fn refuses_lines(error: &InfluxError) -> bool {
    match error {
        InfluxError::PartialWrite { .. } => true,
        InfluxError::Refused { status, .. } => *status == 400 || *status == 413,
        _ => false,
    }
}

/// The end of the line before the one ending at `end`.
fn previous_end(line_ends: &[usize], end: usize) -> usize {
    let index = line_ends.partition_point(|&e| e < end);
    if index == 0 {
        0
    } else {
        line_ends[index - 1]
    }
}

/// An InfluxQL single-quoted string's content: backslashes and quotes escaped.
pub fn influxql_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        if c == '\\' || c == '\'' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `(time, value)` rows of every series of every statement, skipping nulls.
fn rows(answer: &QueryAnswer) -> Vec<(i64, f64)> {
    let mut rows: Vec<(i64, f64)> = answer
        .results
        .iter()
        .flat_map(|result| &result.series)
        .flat_map(|series| &series.values)
        .filter_map(|row| Some((row.first()?.as_i64()?, row.get(1)?.as_f64()?)))
        .collect();
    rows.sort_by_key(|&(time, _)| time);
    rows
}

/// The smallest gap between stored points, or [`DEFAULT_READ_STEP`].
fn finest_step(rows: &[(i64, f64)]) -> u32 {
    rows.windows(2)
        .filter_map(|pair| u32::try_from(pair[1].0 - pair[0].0).ok())
        .filter(|&gap| gap > 0)
        .min()
        .unwrap_or(DEFAULT_READ_STEP)
}

/// Places `rows` on the grid of `step`-aligned buckets covering `[range.start, range.end)`;
/// rows in the same bucket are averaged.
fn to_range(
    range: &RangeQuery,
    step: u32,
    rows: &[(i64, f64)],
) -> Result<SeriesRange, InfluxError> {
    let step_secs = i64::from(step);
    let start = range.start - range.start.rem_euclid(step_secs);
    let span = range.end.saturating_sub(start).max(0);
    let count = span / step_secs + i64::from(span % step_secs != 0);
    if count > MAX_READ_VALUES {
        return Err(InfluxError::BadRange(format!(
            "{count} values of {step}s asked for; at most {MAX_READ_VALUES}"
        )));
    }
    let count = usize::try_from(count).unwrap_or(0);
    let mut sums = vec![(0.0f64, 0u32); count];
    for &(time, value) in rows {
        let index = (time - start).div_euclid(step_secs);
        if let Some(slot) = usize::try_from(index).ok().and_then(|i| sums.get_mut(i)) {
            slot.0 += value;
            slot.1 += 1;
        }
    }
    Ok(SeriesRange {
        start,
        step,
        values: sums
            .into_iter()
            .map(|(sum, n)| (n > 0).then(|| sum / f64::from(n)))
            .collect(),
    })
}

impl Backend for InfluxBackend {
    fn name(&self) -> &'static str {
        "influxdb"
    }

    fn write(&mut self, batches: &[SeriesBatch]) -> Result<WriteReport, BackendError> {
        Ok(self.write_chunks(batches)?)
    }

    fn read(&mut self, key: &SeriesKey, range: &RangeQuery) -> Result<SeriesRange, BackendError> {
        self.read_range(key, range)?
            .ok_or_else(|| BackendError::NotFound(key.clone()))
    }

    /// Over the v1 API: the points rewritten under the new tags, the old series dropped. Over
    /// v2 (and so VictoriaMetrics' v2 endpoint) there is no read to copy with: unsupported.
    fn rename_series(
        &mut self,
        from: &SeriesKey,
        to: &SeriesKey,
    ) -> Result<SeriesRename, BackendError> {
        if self.client.config().api != Api::V1 {
            return Ok(SeriesRename::Unsupported(
                InfluxError::ReadNotSupported.to_string(),
            ));
        }
        Ok(SeriesRename::Moved {
            points: self.rename_points(from, to)?,
        })
    }
}
