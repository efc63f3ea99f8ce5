//! A series as graphite-web's `TimeSeries` holds it: values from `start` every `step` seconds
//! up to `end` (exclusive for data, the last timestamp being `start + (n-1)·step`), a name,
//! the path expression it came from, and a consolidation (`valuesPerPoint` and the function
//! that combines them) that is applied when the series is read, not when it is set.

/// How `values_per_point` raw values become one (graphite's `consolidateBy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consolidation {
    Average,
    Sum,
    Min,
    Max,
    First,
    Last,
}

impl Consolidation {
    /// `average`/`avg`, `sum`, `min`, `max`, `first`, `last`.
    pub fn parse(name: &str) -> Option<Consolidation> {
        Some(match name {
            "average" | "avg" => Consolidation::Average,
            "sum" => Consolidation::Sum,
            "min" => Consolidation::Min,
            "max" => Consolidation::Max,
            "first" => Consolidation::First,
            "last" => Consolidation::Last,
            _ => return None,
        })
    }

    fn combine(self, values: &[f64]) -> f64 {
        match self {
            Consolidation::Average => values.iter().sum::<f64>() / values.len() as f64,
            Consolidation::Sum => values.iter().sum(),
            Consolidation::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
            Consolidation::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Consolidation::First => values[0],
            Consolidation::Last => values[values.len() - 1],
        }
    }
}

/// One series of a render.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    /// The path expression (or, after most functions, the name) that aggregations name.
    pub path_expression: String,
    pub start: i64,
    pub end: i64,
    pub step: i64,
    pub values: Vec<Option<f64>>,
    pub consolidation: Consolidation,
    pub values_per_point: usize,
    /// The share of a consolidated group that must be non-null (graphite's xFilesFactor).
    pub x_files_factor: f64,
}

impl Series {
    pub fn new(
        name: impl Into<String>,
        start: i64,
        end: i64,
        step: i64,
        values: Vec<Option<f64>>,
    ) -> Series {
        let name = name.into();
        Series {
            path_expression: name.clone(),
            name,
            start,
            end,
            step,
            values,
            consolidation: Consolidation::Average,
            values_per_point: 1,
            x_files_factor: 0.0,
        }
    }

    /// A new series keeping this one's consolidation function and xFilesFactor (graphite's
    /// `TimeSeries.copy`): its path expression is its name and it is not consolidated.
    pub fn derive(&self, name: String, values: Vec<Option<f64>>) -> Series {
        Series {
            path_expression: name.clone(),
            name,
            start: self.start,
            end: self.end,
            step: self.step,
            values,
            consolidation: self.consolidation,
            values_per_point: 1,
            x_files_factor: self.x_files_factor,
        }
    }

    /// The values as graphite iterates them: consolidated by `values_per_point` when above 1
    /// (a group with no value, or too few for the xFilesFactor, is null).
    pub fn points(&self) -> Vec<Option<f64>> {
        if self.values_per_point <= 1 {
            return self.values.clone();
        }
        let group = self.values_per_point;
        self.values
            .chunks(group)
            .map(|chunk| {
                let present: Vec<f64> = chunk.iter().flatten().copied().collect();
                if !present.is_empty() && present.len() as f64 / group as f64 >= self.x_files_factor
                {
                    Some(self.consolidation.combine(&present))
                } else {
                    None
                }
            })
            .collect()
    }

    /// `(value, timestamp)` pairs as graphite-web's `datapoints()` gives them.
    pub fn datapoints(&self) -> Vec<(Option<f64>, i64)> {
        let stride = self.step * self.values_per_point as i64;
        let points = self.points();
        let mut out = Vec::with_capacity(points.len());
        let mut at = self.start;
        for value in points {
            if at > self.end || stride <= 0 {
                break;
            }
            out.push((value, at));
            at += stride;
        }
        out
    }
}

/// The `maxDataPoints` consolidation of a JSON render, as graphite-web's `renderViewJson`
/// means it, set on the series (start nudged, values dropped, `values_per_point`) for a writer
/// that walks them itself: the span of all series divided into at most that many points, each
/// series' start nudged to a multiple of the bucket width so that buckets stay put from one
/// refresh to the next, each bucket holding the values from its stamp on.
pub fn apply_max_data_points(series: &mut [Series], max_data_points: Option<usize>) {
    if let Some(max) = max_data_points.filter(|_| !series.is_empty()) {
        let start = series.iter().map(|s| s.start).min().unwrap_or(0);
        let end = series.iter().map(|s| s.end).max().unwrap_or(0);
        let range = (end - start) as f64;
        for one in series.iter_mut() {
            if max == 1 {
                one.values_per_point = one.values.len().max(1);
                continue;
            }
            let points = range / one.step as f64;
            if (max as f64) < points {
                let per_point = (points / max as f64).ceil() as i64;
                let seconds_per_point = per_point * one.step;
                let nudge = seconds_per_point + one.start.rem_euclid(one.step)
                    - one.start.rem_euclid(seconds_per_point);
                one.start += nudge;
                // graphite-web 1.1.8 drops one value fewer than the nudge moves the start
                // (`for r in range(1, valuesToLose)`), so its bucket stamped T holds the
                // values of T - step to T + spp - 2·step. Here the bucket stamped T holds
                // T to T + spp - step, as the nudge means (docs/api.md).
                let lose = ((nudge / one.step) as usize).min(one.values.len());
                one.values.drain(..lose);
                one.values_per_point = per_point as usize;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consolidation_on_read() {
        let mut series = Series::new(
            "a",
            0,
            60,
            10,
            vec![Some(1.0), None, Some(3.0), None, None, None],
        );
        series.values_per_point = 2;
        assert_eq!(series.points(), vec![Some(1.0), Some(3.0), None]);
        series.consolidation = Consolidation::Sum;
        series.x_files_factor = 0.6;
        assert_eq!(series.points(), vec![None, None, None]);
        assert_eq!(series.datapoints(), vec![(None, 0), (None, 20), (None, 40)]);
    }

    #[test]
    fn max_data_points_buckets_start_at_their_stamp() {
        let values: Vec<Option<f64>> = (0..10).map(|v| Some(f64::from(v))).collect();
        let mut series = vec![Series::new("a", 1000, 1100, 10, values)];
        apply_max_data_points(&mut series, Some(4));
        let points: Vec<_> = series.iter().map(Series::datapoints).collect();
        // 10 points into at most 4: 3 a point; start nudged from 1000 to 1020, the first
        // bucket holding the values stamped 1020, 1030, 1040 (graphite-web 1.1.8: 1010-1030).
        assert_eq!(series[0].start, 1020);
        assert_eq!(
            points[0],
            vec![(Some(3.0), 1020), (Some(6.0), 1050), (Some(8.5), 1080)]
        );
    }
}
