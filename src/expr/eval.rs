//! Evaluation of an [`Expr`] against a [`Series`] source at a given `now`. It never panics
//! and never substitutes 0 for missing data: the first missing part makes the whole outcome
//! `Missing`, with a reason that quotes that part in canonical form and says why. Every
//! scalar it produces is finite (overflow is reported as missing, not passed on as inf).

use super::ast::{Aggregate, BinaryOp, Expr, Pick, RangeSelector, SeriesName};
use super::outcome::Outcome;
use super::parser::MAX_DEPTH;
use super::source::{Sample, Series};

const SECONDS_PER_DAY: i64 = 86_400;

/// How many of the newest values give the median gap when the source knows no step.
const STEP_SAMPLE_VALUES: usize = 257;

/// Evaluates `expr` with `now` in epoch seconds.
pub fn evaluate(expr: &Expr, source: &dyn Series, now: i64) -> Outcome {
    let context = Context { source, now };
    match context.eval(expr, 0) {
        Ok(Computed::Scalar(value)) => Outcome::Value(value),
        Ok(Computed::List(values)) => Outcome::Values(values),
        Err(reason) => Outcome::Missing { reason },
    }
}

enum Computed {
    Scalar(f64),
    /// A range's values, newest first.
    List(Vec<f64>),
}

/// Why a value is missing.
type Reason = String;

struct Context<'s> {
    source: &'s dyn Series,
    now: i64,
}

impl Context<'_> {
    fn eval(&self, expr: &Expr, depth: usize) -> Result<Computed, Reason> {
        // `parse` bounds nesting; this guards hand-built trees against exhausting the stack.
        if depth > 2 * MAX_DEPTH {
            return Err(format!("expression nested deeper than {MAX_DEPTH} levels"));
        }
        match expr {
            Expr::Number(value) => {
                finite(*value, || format!("{expr} is not a finite number")).map(Computed::Scalar)
            }
            Expr::Value { series, pick } => self.value(series, *pick).map(Computed::Scalar),
            Expr::Range { series, range } => self.range(series, *range).map(Computed::List),
            Expr::Negate(inner) => Ok(Computed::Scalar(-self.scalar(inner, depth)?)),
            Expr::Binary { op, left, right } => {
                let left = self.scalar(left, depth)?;
                let right = self.scalar(right, depth)?;
                let result = match op {
                    BinaryOp::Add => left + right,
                    BinaryOp::Subtract => left - right,
                    BinaryOp::Multiply => left * right,
                    BinaryOp::Divide if right == 0.0 => {
                        return Err(format!("division by zero in {expr}"))
                    }
                    BinaryOp::Divide => left / right,
                };
                finite(result, || {
                    format!("result is not a finite number in {expr}")
                })
                .map(Computed::Scalar)
            }
            Expr::Aggregate {
                function,
                arguments,
            } => self
                .aggregate(expr, *function, arguments, depth)
                .map(Computed::Scalar),
            Expr::Baseline {
                series,
                weeks,
                same_weekday,
            } => self
                .baseline(expr, series, *weeks, *same_weekday)
                .map(Computed::Scalar),
        }
    }

    /// Evaluates an operand of arithmetic, which must be one value.
    fn scalar(&self, expr: &Expr, depth: usize) -> Result<f64, Reason> {
        match self.eval(expr, depth + 1)? {
            Computed::Scalar(value) => Ok(value),
            Computed::List(_) => Err(format!("{expr}: a range cannot be used in arithmetic")),
        }
    }

    /// The number of values stored, or why the series cannot be read.
    fn stored(&self, series: &SeriesName, shown: impl FnOnce() -> String) -> Result<usize, Reason> {
        self.source
            .value_count(series)
            .ok_or_else(|| format!("{}: no such series", shown()))
    }

    fn value(&self, series: &SeriesName, pick: Pick) -> Result<f64, Reason> {
        let shown = || format!("{series}[{pick}]");
        let stored = self.stored(series, shown)?;
        let sample = match pick {
            Pick::Index(index) => self
                .source
                .latest(series, index)
                .ok_or_else(|| format!("{}: {}", shown(), stored_values(stored)))?,
            Pick::Ago(offset) => {
                let Some(seconds) = offset.seconds() else {
                    return Err(format!("{}: time offset out of range", shown()));
                };
                let at = self.now.saturating_sub(seconds);
                let mut step = StepFinder::new(self.source, series);
                let tolerance = step.half_step(at);
                self.source
                    .nearest(series, at, tolerance)
                    .ok_or_else(|| format!("{}: no value within ±{tolerance} s of {at}", shown()))?
            }
        };
        finite(sample.1, || {
            format!("{}: stored value is not a number", shown())
        })
    }

    fn range(&self, series: &SeriesName, range: RangeSelector) -> Result<Vec<f64>, Reason> {
        self.stored(series, || format!("{series}[{range}]"))?;
        let samples = match range {
            RangeSelector::Indexes { newest, oldest } => {
                self.source
                    .latest_range(series, newest.min(oldest), newest.max(oldest))
            }
            RangeSelector::Ago { newest, oldest } => {
                let (Some(newest), Some(oldest)) = (newest.seconds(), oldest.seconds()) else {
                    return Err(format!("{series}[{range}]: time offset out of range"));
                };
                let a = self.now.saturating_sub(newest);
                let b = self.now.saturating_sub(oldest);
                self.source.between(series, a.min(b), a.max(b))
            }
        };
        Ok(samples
            .into_iter()
            .map(|sample| sample.1)
            .filter(|value| value.is_finite())
            .collect())
    }

    fn aggregate(
        &self,
        call: &Expr,
        function: Aggregate,
        arguments: &[Expr],
        depth: usize,
    ) -> Result<f64, Reason> {
        let mut values = Vec::new();
        for argument in arguments {
            match self.eval(argument, depth + 1)? {
                Computed::Scalar(value) => values.push(value),
                Computed::List(list) => values.extend(list),
            }
        }
        if function == Aggregate::Count {
            return Ok(values.len() as f64);
        }
        if values.is_empty() {
            return Err(format!("{call}: no values (empty range)"));
        }
        let result = match function {
            Aggregate::Avg => values.iter().sum::<f64>() / values.len() as f64,
            Aggregate::Sum => values.iter().sum(),
            Aggregate::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Aggregate::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
            Aggregate::Count => values.len() as f64,
        };
        finite(result, || format!("{call}: result is not a finite number"))
    }

    /// The average of the values nearest to now's time of day, 1..=7N days back (or only
    /// every 7th day with `same_weekday`), each within half a step; days without a value
    /// are left out of the average.
    fn baseline(
        &self,
        call: &Expr,
        series: &SeriesName,
        weeks: u32,
        same_weekday: bool,
    ) -> Result<f64, Reason> {
        self.stored(series, || call.to_string())?;
        if weeks == 0 {
            return Err(format!("{call}: baseline needs at least 1 week"));
        }
        let (days_apart, sample_count) = if same_weekday {
            (7, i64::from(weeks))
        } else {
            (1, 7 * i64::from(weeks))
        };
        let mut step = StepFinder::new(self.source, series);
        let mut sum = 0.0;
        let mut found = 0usize;
        let mut widest_tolerance = 0;
        for sample in 1..=sample_count {
            let at = self
                .now
                .saturating_sub(sample * days_apart * SECONDS_PER_DAY);
            let tolerance = step.half_step(at);
            widest_tolerance = widest_tolerance.max(tolerance);
            if let Some((_, value)) = self.source.nearest(series, at, tolerance) {
                if value.is_finite() {
                    sum += value;
                    found += 1;
                }
            }
        }
        if found == 0 {
            let days = if same_weekday {
                "same weekdays"
            } else {
                "days"
            };
            return Err(format!(
                "{call}: no value within ±{widest_tolerance} s of this time of day \
                 on any of the {sample_count} previous {days}"
            ));
        }
        finite(sum / found as f64, || {
            format!("{call}: result is not a finite number")
        })
    }
}

/// Finds half the series' step at a time: from the source, or else the median gap between
/// the newest values, computed once.
struct StepFinder<'s> {
    source: &'s dyn Series,
    series: &'s SeriesName,
    median_gap: Option<Option<i64>>,
}

impl<'s> StepFinder<'s> {
    fn new(source: &'s dyn Series, series: &'s SeriesName) -> Self {
        StepFinder {
            source,
            series,
            median_gap: None,
        }
    }

    /// Half the step around `at` in seconds; 0 (exact match only) when no step is known.
    fn half_step(&mut self, at: i64) -> i64 {
        let step = match self.source.step(self.series, at) {
            Some(step) => Some(step),
            None => *self.median_gap.get_or_insert_with(|| {
                median_gap(
                    &self
                        .source
                        .latest_range(self.series, 0, STEP_SAMPLE_VALUES - 1),
                )
            }),
        };
        step.filter(|step| *step > 0).map_or(0, |step| step / 2)
    }
}

/// The median of the gaps between consecutive samples (upper median for an even count),
/// ignoring samples out of order.
fn median_gap(newest_first: &[Sample]) -> Option<i64> {
    let mut gaps: Vec<i64> = newest_first
        .windows(2)
        .filter_map(|pair| pair[0].0.checked_sub(pair[1].0))
        .filter(|gap| *gap > 0)
        .collect();
    if gaps.is_empty() {
        return None;
    }
    let middle = gaps.len() / 2;
    Some(*gaps.select_nth_unstable(middle).1)
}

fn stored_values(stored: usize) -> String {
    match stored {
        0 => "no values stored".to_string(),
        1 => "only 1 value stored".to_string(),
        n => format!("only {n} values stored"),
    }
}

fn finite(value: f64, reason: impl FnOnce() -> Reason) -> Result<f64, Reason> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(reason())
    }
}
