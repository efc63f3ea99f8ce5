//! Where expressions get their data: the [`Series`] trait the server implements over its
//! last-values cache and stored series, and [`MemorySeries`], a reference implementation
//! over sorted vectors (used by the tests, and a model for the server's). The trait asks for
//! lookups by index and by time rather than whole series, so that a store kept in time
//! order answers each with a binary search: `baseline(…, 4W)` then costs 28 lookups, not a
//! copy of 40,320 points.

use std::collections::HashMap;

use super::ast::SeriesName;

/// One stored value: (epoch seconds, value).
pub type Sample = (i64, f64);

/// Read access to stored series.
///
/// Contract, for every method:
/// - A series holds at most one value per timestamp. Index 0 is the newest value, index 1
///   the one before it, and so on; every list returned is newest first.
/// - Values are finite: a store's "unknown" (NaN) is left out, not returned (the evaluator
///   skips non-finite values anyway, but then counts and indexes would disagree).
/// - `None` or an empty list for a series that does not exist; the evaluator asks
///   `value_count` first to tell "no such series" from "no value there".
/// - Meant to be cheap: `value_count`, `latest` and `step` O(1) or O(log n), `nearest`
///   O(log n), the ranges O(log n + values returned). Evaluation calls them synchronously,
///   so they should not block on I/O for long.
pub trait Series {
    /// How many values the series holds, or `None` when there is no such series.
    fn value_count(&self, series: &SeriesName) -> Option<usize>;

    /// The value `index` places before the newest (0 = newest), or `None` when the series
    /// holds no more than `index` values.
    fn latest(&self, series: &SeriesName, index: usize) -> Option<Sample>;

    /// The values with indexes `newest..=oldest` (`newest <= oldest`), newest first, as many
    /// as are stored.
    fn latest_range(&self, series: &SeriesName, newest: usize, oldest: usize) -> Vec<Sample>;

    /// The value whose timestamp is nearest to `at`, if it is at most `tolerance` seconds
    /// away (inclusive). Of two equally near, the newer.
    fn nearest(&self, series: &SeriesName, at: i64, tolerance: i64) -> Option<Sample>;

    /// The values stamped `from..=to` (`from <= to`), newest first.
    fn between(&self, series: &SeriesName, from: i64, to: i64) -> Vec<Sample>;

    /// The spacing of the series' values around `at`, in seconds, when the store knows it (a
    /// store that consolidates old data, such as RRD, answers the coarser step for old
    /// times). `None` makes the evaluator use the median gap of the newest values.
    fn step(&self, series: &SeriesName, at: i64) -> Option<i64> {
        let _ = (series, at);
        None
    }
}

/// Series held in memory, each as a vector sorted oldest first.
#[derive(Debug, Clone, Default)]
pub struct MemorySeries {
    series: HashMap<SeriesName, Stored>,
}

#[derive(Debug, Clone, Default)]
struct Stored {
    /// Oldest first, timestamps strictly increasing, values finite.
    samples: Vec<Sample>,
    step: Option<i64>,
}

impl MemorySeries {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the values of a series (replacing any it had), in any order. Of samples with
    /// the same timestamp the last given wins; non-finite values are dropped.
    pub fn insert(&mut self, series: SeriesName, samples: impl IntoIterator<Item = Sample>) {
        let mut samples: Vec<Sample> = samples.into_iter().filter(|s| s.1.is_finite()).collect();
        // Stable, so equal timestamps keep their given order and the last one survives.
        samples.sort_by_key(|sample| sample.0);
        let mut unique: Vec<Sample> = Vec::with_capacity(samples.len());
        for sample in samples {
            match unique.last_mut() {
                Some(last) if last.0 == sample.0 => *last = sample,
                _ => unique.push(sample),
            }
        }
        let step = self.series.get(&series).and_then(|stored| stored.step);
        self.series.insert(
            series,
            Stored {
                samples: unique,
                step,
            },
        );
    }

    /// Declares the series' step (creating the series, empty, if needed).
    pub fn set_step(&mut self, series: SeriesName, step: i64) {
        self.series.entry(series).or_default().step = Some(step);
    }

    fn samples(&self, series: &SeriesName) -> &[Sample] {
        self.series
            .get(series)
            .map_or(&[][..], |stored| &stored.samples)
    }
}

impl Series for MemorySeries {
    fn value_count(&self, series: &SeriesName) -> Option<usize> {
        self.series.get(series).map(|stored| stored.samples.len())
    }

    fn latest(&self, series: &SeriesName, index: usize) -> Option<Sample> {
        let samples = self.samples(series);
        let position = samples.len().checked_sub(index.checked_add(1)?)?;
        samples.get(position).copied()
    }

    fn latest_range(&self, series: &SeriesName, newest: usize, oldest: usize) -> Vec<Sample> {
        let samples = self.samples(series);
        if newest > oldest || newest >= samples.len() {
            return Vec::new();
        }
        // Index i is at position len-1-i; the range is a contiguous slice, reversed.
        let oldest = oldest.min(samples.len() - 1);
        let from = samples.len() - 1 - oldest;
        let to = samples.len() - 1 - newest;
        samples[from..=to].iter().rev().copied().collect()
    }

    fn nearest(&self, series: &SeriesName, at: i64, tolerance: i64) -> Option<Sample> {
        let samples = self.samples(series);
        let tolerance = u64::try_from(tolerance).ok()?;
        let first_not_older = samples.partition_point(|sample| sample.0 < at);
        let newer = samples.get(first_not_older).copied();
        let older = first_not_older
            .checked_sub(1)
            .and_then(|position| samples.get(position))
            .copied();
        let best = match (older, newer) {
            (Some(older), Some(newer)) => {
                if newer.0.abs_diff(at) <= older.0.abs_diff(at) {
                    newer
                } else {
                    older
                }
            }
            (Some(only), None) | (None, Some(only)) => only,
            (None, None) => return None,
        };
        (best.0.abs_diff(at) <= tolerance).then_some(best)
    }

    fn between(&self, series: &SeriesName, from: i64, to: i64) -> Vec<Sample> {
        let samples = self.samples(series);
        if from > to {
            return Vec::new();
        }
        let first = samples.partition_point(|sample| sample.0 < from);
        let end = samples.partition_point(|sample| sample.0 <= to);
        samples[first..end.max(first)]
            .iter()
            .rev()
            .copied()
            .collect()
    }

    fn step(&self, series: &SeriesName, _at: i64) -> Option<i64> {
        self.series.get(series).and_then(|stored| stored.step)
    }
}
