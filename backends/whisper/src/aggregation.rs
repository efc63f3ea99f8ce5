//! Whisper's eight aggregation methods, their on-disk type codes (1..=8), and the exact
//! arithmetic whisper 1.1.4 performs when it consolidates points into a lower archive.
//!
//! "Exact" means the CPython 3.11 semantics whisper runs on in Debian: `sum()` of floats is a
//! plain left-to-right double addition starting at `0.0` (CPython 3.12 switched to compensated
//! summation, so `average`/`sum`/`avg_zero` can differ in the last bit there), and `max`/`min`
//! keep the first of equal candidates and never replace a value with NaN.

use std::fmt;
use std::str::FromStr;

use crate::error::WhisperError;

/// How a lower-precision archive combines the points of one of its intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AggregationMethod {
    /// Mean of the known values (type 1, the default).
    #[default]
    Average,
    /// Sum of the known values (type 2).
    Sum,
    /// The latest known value (type 3).
    Last,
    /// The largest known value (type 4).
    Max,
    /// The smallest known value (type 5).
    Min,
    /// Mean over all slots of the interval, unknown ones counted as zero (type 6).
    AvgZero,
    /// The known value of largest magnitude, sign kept (type 7).
    AbsMax,
    /// The known value of smallest magnitude, sign kept (type 8).
    AbsMin,
}

impl AggregationMethod {
    /// All methods, in type-code order.
    pub const ALL: [AggregationMethod; 8] = [
        AggregationMethod::Average,
        AggregationMethod::Sum,
        AggregationMethod::Last,
        AggregationMethod::Max,
        AggregationMethod::Min,
        AggregationMethod::AvgZero,
        AggregationMethod::AbsMax,
        AggregationMethod::AbsMin,
    ];

    /// The code stored in the header's `aggregationType` field.
    pub fn type_code(self) -> u32 {
        match self {
            AggregationMethod::Average => 1,
            AggregationMethod::Sum => 2,
            AggregationMethod::Last => 3,
            AggregationMethod::Max => 4,
            AggregationMethod::Min => 5,
            AggregationMethod::AvgZero => 6,
            AggregationMethod::AbsMax => 7,
            AggregationMethod::AbsMin => 8,
        }
    }

    /// The method a header code stands for, if any.
    pub fn from_type_code(code: u32) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|method| method.type_code() == code)
    }

    /// Whisper's name for the method (`average`, `avg_zero`, ...).
    pub fn name(self) -> &'static str {
        match self {
            AggregationMethod::Average => "average",
            AggregationMethod::Sum => "sum",
            AggregationMethod::Last => "last",
            AggregationMethod::Max => "max",
            AggregationMethod::Min => "min",
            AggregationMethod::AvgZero => "avg_zero",
            AggregationMethod::AbsMax => "absmax",
            AggregationMethod::AbsMin => "absmin",
        }
    }

    /// Combines the slots of one lower-archive interval. `neighbors` holds every slot of the
    /// interval in time order, `None` where the higher archive has no point; at least one is
    /// known (whisper does not aggregate otherwise).
    pub(crate) fn aggregate(self, neighbors: &[Option<f64>]) -> f64 {
        let known = neighbors.iter().flatten().copied();
        match self {
            AggregationMethod::Average => {
                let (sum, count) =
                    known.fold((0.0, 0usize), |(sum, count), v| (sum + v, count + 1));
                sum / count as f64
            }
            AggregationMethod::Sum => known.fold(0.0, |sum, v| sum + v),
            AggregationMethod::Last => known.last().unwrap_or(f64::NAN),
            AggregationMethod::Max => first_winning(known, |candidate, best| candidate > best),
            AggregationMethod::Min => first_winning(known, |candidate, best| candidate < best),
            AggregationMethod::AbsMax => {
                first_winning(known, |candidate, best| candidate.abs() > best.abs())
            }
            AggregationMethod::AbsMin => {
                first_winning(known, |candidate, best| candidate.abs() < best.abs())
            }
            AggregationMethod::AvgZero => {
                let sum = neighbors.iter().fold(0.0, |sum, v| sum + v.unwrap_or(0.0));
                sum / neighbors.len() as f64
            }
        }
    }
}

/// Python's `max`/`min`: the first value, replaced only by a later one that strictly beats it.
fn first_winning(mut values: impl Iterator<Item = f64>, beats: impl Fn(f64, f64) -> bool) -> f64 {
    let first = values.next().unwrap_or(f64::NAN);
    values.fold(first, |best, candidate| {
        if beats(candidate, best) {
            candidate
        } else {
            best
        }
    })
}

impl fmt::Display for AggregationMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AggregationMethod {
    type Err = WhisperError;

    /// Parses whisper's method names (`average`, `sum`, `last`, `max`, `min`, `avg_zero`,
    /// `absmax`, `absmin`).
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|method| method.name() == name)
            .ok_or_else(|| WhisperError::InvalidAggregationMethod(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_round_trip() {
        for method in AggregationMethod::ALL {
            assert_eq!(
                AggregationMethod::from_type_code(method.type_code()),
                Some(method)
            );
            assert_eq!(method.name().parse::<AggregationMethod>().unwrap(), method);
        }
        assert_eq!(AggregationMethod::from_type_code(0), None);
        assert_eq!(AggregationMethod::from_type_code(9), None);
        assert!("median".parse::<AggregationMethod>().is_err());
    }

    #[test]
    fn aggregates_like_python() {
        let slots = [Some(-3.0), None, Some(2.0), Some(3.0)];
        assert_eq!(AggregationMethod::Average.aggregate(&slots), 2.0 / 3.0);
        assert_eq!(AggregationMethod::Sum.aggregate(&slots), 2.0);
        assert_eq!(AggregationMethod::Last.aggregate(&slots), 3.0);
        assert_eq!(AggregationMethod::Max.aggregate(&slots), 3.0);
        assert_eq!(AggregationMethod::Min.aggregate(&slots), -3.0);
        assert_eq!(AggregationMethod::AvgZero.aggregate(&slots), 0.5);
        // Ties on magnitude keep the first candidate, as Python's max(key=abs) does.
        assert_eq!(AggregationMethod::AbsMax.aggregate(&slots), -3.0);
        assert_eq!(AggregationMethod::AbsMin.aggregate(&slots), 2.0);
    }
}
