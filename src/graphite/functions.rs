//! The render functions, each following graphite-web 1.1's `functions.py`: the same result
//! names (`scale(x,0.5)`, `summarize(x, "1h", "sum")`, `removeBelowValue(x, 3)`), the same
//! null rules (`safeSum` skips nulls and is null only when every input is; a product with a
//! null is null; division by 0 or null is null), the same normalisation of mixed steps (least
//! common multiple, the finer series consolidated on read) and the same bucket alignment.
//! Where graphite-web fails on an input (a Python `TypeError` on a null in
//! `nonNegativeDerivative(…, maxValue)`), the function does what the documentation intends
//! and `docs/api.md` says so.

use super::attime::{parse_time_offset, truncate};
use super::eval::{Context, EvalError, Value};
use super::parse::{parse_target, Arg, Expr};
use super::pyfmt::{float_str, percent_g};
use super::series::{Consolidation, Series};

/// The functions `/render` knows, with their parameters (for `GET /functions`): name, then
/// each parameter as `(name, type, required)`.
/// A parameter of a function: name, Graphite's type name, required.
pub type Param = (&'static str, &'static str, bool);

/// A function of `/render`: name, Graphite's group, parameters.
pub type FunctionSpec = (&'static str, &'static str, &'static [Param]);

pub const FUNCTION_NAMES: &[FunctionSpec] = &[
    (
        "sumSeries",
        "Combine",
        &[("seriesLists", "seriesList", true)],
    ),
    (
        "averageSeries",
        "Combine",
        &[("seriesLists", "seriesList", true)],
    ),
    (
        "minSeries",
        "Combine",
        &[("seriesLists", "seriesList", true)],
    ),
    (
        "maxSeries",
        "Combine",
        &[("seriesLists", "seriesList", true)],
    ),
    (
        "diffSeries",
        "Combine",
        &[("seriesLists", "seriesList", true)],
    ),
    (
        "multiplySeries",
        "Combine",
        &[("seriesLists", "seriesList", true)],
    ),
    (
        "divideSeries",
        "Combine",
        &[
            ("dividendSeriesList", "seriesList", true),
            ("divisorSeries", "seriesList", true),
        ],
    ),
    (
        "asPercent",
        "Combine",
        &[
            ("seriesList", "seriesList", true),
            ("total", "any", false),
            ("nodes", "nodeOrTag", false),
        ],
    ),
    (
        "groupByNode",
        "Combine",
        &[
            ("seriesList", "seriesList", true),
            ("nodeNum", "nodeOrTag", true),
            ("callback", "aggOrSeriesFunc", false),
        ],
    ),
    (
        "scale",
        "Transform",
        &[
            ("seriesList", "seriesList", true),
            ("factor", "float", true),
        ],
    ),
    (
        "offset",
        "Transform",
        &[
            ("seriesList", "seriesList", true),
            ("factor", "float", true),
        ],
    ),
    (
        "absolute",
        "Transform",
        &[("seriesList", "seriesList", true)],
    ),
    (
        "derivative",
        "Transform",
        &[("seriesList", "seriesList", true)],
    ),
    (
        "nonNegativeDerivative",
        "Transform",
        &[
            ("seriesList", "seriesList", true),
            ("maxValue", "float", false),
            ("minValue", "float", false),
        ],
    ),
    (
        "perSecond",
        "Transform",
        &[
            ("seriesList", "seriesList", true),
            ("maxValue", "float", false),
            ("minValue", "float", false),
        ],
    ),
    (
        "integral",
        "Transform",
        &[("seriesList", "seriesList", true)],
    ),
    (
        "timeShift",
        "Transform",
        &[
            ("seriesList", "seriesList", true),
            ("timeShift", "string", true),
            ("resetEnd", "boolean", false),
            ("alignDST", "boolean", false),
        ],
    ),
    (
        "summarize",
        "Transform",
        &[
            ("seriesList", "seriesList", true),
            ("intervalString", "interval", true),
            ("func", "aggFunc", false),
            ("alignToFrom", "boolean", false),
        ],
    ),
    (
        "hitcount",
        "Transform",
        &[
            ("seriesList", "seriesList", true),
            ("intervalString", "interval", true),
            ("alignToInterval", "boolean", false),
        ],
    ),
    (
        "transformNull",
        "Transform",
        &[
            ("seriesList", "seriesList", true),
            ("default", "float", false),
            ("referenceSeries", "seriesList", false),
        ],
    ),
    (
        "keepLastValue",
        "Transform",
        &[
            ("seriesList", "seriesList", true),
            ("limit", "intOrInf", false),
        ],
    ),
    (
        "consolidateBy",
        "Special",
        &[
            ("seriesList", "seriesList", true),
            ("consolidationFunc", "string", true),
        ],
    ),
    (
        "movingAverage",
        "Calculate",
        &[
            ("seriesList", "seriesList", true),
            ("windowSize", "intOrInterval", true),
            ("xFilesFactor", "float", false),
        ],
    ),
    (
        "alias",
        "Alias",
        &[
            ("seriesList", "seriesList", true),
            ("newName", "string", true),
        ],
    ),
    (
        "aliasByNode",
        "Alias",
        &[
            ("seriesList", "seriesList", true),
            ("nodes", "nodeOrTag", true),
        ],
    ),
    (
        "aliasSub",
        "Alias",
        &[
            ("seriesList", "seriesList", true),
            ("search", "string", true),
            ("replace", "string", true),
        ],
    ),
    (
        "highestMax",
        "Filter Series",
        &[("seriesList", "seriesList", true), ("n", "integer", true)],
    ),
    (
        "highestCurrent",
        "Filter Series",
        &[("seriesList", "seriesList", true), ("n", "integer", true)],
    ),
    (
        "lowestCurrent",
        "Filter Series",
        &[("seriesList", "seriesList", true), ("n", "integer", true)],
    ),
    (
        "limit",
        "Filter Series",
        &[("seriesList", "seriesList", true), ("n", "integer", true)],
    ),
    (
        "removeBelowValue",
        "Filter Data",
        &[("seriesList", "seriesList", true), ("n", "float", true)],
    ),
    (
        "removeAboveValue",
        "Filter Data",
        &[("seriesList", "seriesList", true), ("n", "float", true)],
    ),
    (
        "sortByMaxima",
        "Sorting",
        &[("seriesList", "seriesList", true)],
    ),
];

/// Short names graphite accepts for some functions.
fn canonical(name: &str) -> &str {
    match name {
        "sum" => "sumSeries",
        "avg" => "averageSeries",
        "min" => "minSeries",
        "max" => "maxSeries",
        other => other,
    }
}

/// The bound arguments of one call.
struct Args<'a> {
    function: &'a str,
    positional: Vec<Value>,
    named: Vec<(String, Value)>,
    params: &'static [Param],
}

impl Args<'_> {
    fn bad(&self, message: impl Into<String>) -> EvalError {
        EvalError::BadArgument {
            function: self.function.to_string(),
            message: message.into(),
        }
    }

    /// The argument at `index` or named `name`.
    fn get(&self, index: usize) -> Option<&Value> {
        let name = self.params.get(index).map(|p| p.0);
        self.positional.get(index).or_else(|| {
            name.and_then(|name| self.named.iter().find(|(k, _)| k == name).map(|(_, v)| v))
        })
    }

    /// The series list argument `index`, taken out of the arguments (lists can be large and
    /// each is used once).
    fn series(&mut self, index: usize) -> Result<Vec<Series>, EvalError> {
        let name = self.params.get(index).map(|p| p.0);
        let slot = if index < self.positional.len() {
            Some(&mut self.positional[index])
        } else {
            name.and_then(|name| {
                self.named
                    .iter_mut()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v)
            })
        };
        match slot {
            Some(Value::Series(list)) => Ok(std::mem::take(list)),
            Some(_) => Err(self.bad(format!("argument {} must be a series list", index + 1))),
            None => Err(self.bad(format!("argument {} (a series list) is missing", index + 1))),
        }
    }

    fn optional_number(&self, index: usize) -> Result<Option<f64>, EvalError> {
        match self.get(index) {
            None | Some(Value::None) => Ok(None),
            Some(Value::Int(v)) => Ok(Some(*v as f64)),
            Some(Value::Float(v)) => Ok(Some(*v)),
            Some(_) => Err(self.bad(format!("argument {} must be a number", index + 1))),
        }
    }

    fn number(&self, index: usize) -> Result<f64, EvalError> {
        self.optional_number(index)?
            .ok_or_else(|| self.bad(format!("argument {} (a number) is missing", index + 1)))
    }

    fn integer(&self, index: usize) -> Result<i64, EvalError> {
        let value = self.number(index)?;
        Ok(value.trunc() as i64)
    }

    fn string(&self, index: usize) -> Result<String, EvalError> {
        match self.get(index) {
            Some(Value::Str(text)) => Ok(text.clone()),
            Some(_) => Err(self.bad(format!("argument {} must be a string", index + 1))),
            None => Err(self.bad(format!("argument {} (a string) is missing", index + 1))),
        }
    }

    fn optional_string(&self, index: usize, default: &str) -> Result<String, EvalError> {
        match self.get(index) {
            None => Ok(default.to_string()),
            Some(_) => self.string(index),
        }
    }

    fn boolean(&self, index: usize, default: bool) -> Result<bool, EvalError> {
        match self.get(index) {
            None => Ok(default),
            Some(Value::Bool(v)) => Ok(*v),
            Some(Value::Int(v)) => Ok(*v != 0),
            Some(_) => Err(self.bad(format!("argument {} must be true or false", index + 1))),
        }
    }

    /// Every positional argument from `from` on, each a series list.
    fn series_lists(&mut self, from: usize) -> Result<Vec<Vec<Series>>, EvalError> {
        (from..self.positional.len().max(from + 1))
            .map(|index| self.series(index))
            .collect()
    }
}

/// Calls function `name`: `raw` are its arguments as written (re-evaluated by functions that
/// read another window), `positional` and `named` their values.
pub(crate) fn call(
    context: &mut Context<'_>,
    name: &str,
    raw: &[Arg],
    positional: Vec<Value>,
    named: Vec<(String, Value)>,
) -> Result<Vec<Series>, EvalError> {
    let function = canonical(name);
    let params = FUNCTION_NAMES
        .iter()
        .find(|(known, _, _)| *known == function)
        .map(|(_, _, params)| *params)
        .ok_or_else(|| EvalError::UnknownFunction(name.to_string()))?;
    let mut args = Args {
        function,
        positional,
        named,
        params,
    };
    let first_raw = raw.first().cloned().unwrap_or(Arg::None);
    match function {
        "sumSeries" => Ok(aggregate(context, args.series_lists(0)?, "sum")),
        "averageSeries" => Ok(aggregate(context, args.series_lists(0)?, "average")),
        "minSeries" => Ok(aggregate(context, args.series_lists(0)?, "min")),
        "maxSeries" => Ok(aggregate(context, args.series_lists(0)?, "max")),
        "diffSeries" => Ok(aggregate(context, args.series_lists(0)?, "diff")),
        "multiplySeries" => {
            let lists = args.series_lists(0)?;
            if lists.len() == 1 && lists[0].len() == 1 {
                return Ok(lists.into_iter().next().unwrap_or_default());
            }
            Ok(aggregate(context, lists, "multiply"))
        }
        "divideSeries" => divide_series(context, &mut args),
        "asPercent" => as_percent(context, &mut args),
        "groupByNode" => group_by_node(context, &mut args),
        "scale" => {
            let factor = args.number(1)?;
            Ok(map_values(
                args.series(0)?,
                |name| format!("scale({name},{})", percent_g(factor)),
                |v| v.map(|v| v * factor),
            ))
        }
        "offset" => {
            let factor = args.number(1)?;
            Ok(map_values(
                args.series(0)?,
                |name| format!("offset({name},{})", percent_g(factor)),
                |v| v.map(|v| v + factor),
            ))
        }
        "absolute" => Ok(map_values(
            args.series(0)?,
            |name| format!("absolute({name})"),
            |v| v.map(f64::abs),
        )),
        "removeBelowValue" => {
            let n = args.number(1)?;
            Ok(map_values(
                args.series(0)?,
                |name| format!("removeBelowValue({name}, {})", percent_g(n)),
                |v| v.filter(|v| *v >= n),
            ))
        }
        "removeAboveValue" => {
            let n = args.number(1)?;
            Ok(map_values(
                args.series(0)?,
                |name| format!("removeAboveValue({name}, {})", percent_g(n)),
                |v| v.filter(|v| *v <= n),
            ))
        }
        "derivative" => Ok(derived(args.series(0)?, "derivative", |values| {
            let mut previous = None;
            values
                .iter()
                .map(|&value| {
                    let delta = match (previous, value) {
                        (Some(p), Some(v)) => Some(v - p),
                        _ => None,
                    };
                    previous = value;
                    delta
                })
                .collect()
        })),
        "nonNegativeDerivative" => {
            let (max, min) = (args.optional_number(1)?, args.optional_number(2)?);
            Ok(derived(
                args.series(0)?,
                "nonNegativeDerivative",
                |values| {
                    let mut previous = None;
                    values
                        .iter()
                        .map(|&value| non_negative_delta(value, &mut previous, max, min))
                        .collect()
                },
            ))
        }
        "perSecond" => {
            let (max, min) = (args.optional_number(1)?, args.optional_number(2)?);
            let list = args.series(0)?;
            Ok(list
                .into_iter()
                .map(|series| {
                    let step = series.step as f64;
                    let mut previous = None;
                    let values = series
                        .points()
                        .iter()
                        .map(|&value| {
                            non_negative_delta(value, &mut previous, max, min)
                                .map(|delta| round6(delta / step))
                        })
                        .collect();
                    series.derive(format!("perSecond({})", series.name), values)
                })
                .collect())
        }
        "integral" => Ok(derived(args.series(0)?, "integral", |values| {
            let mut total = 0.0;
            values
                .iter()
                .map(|value| {
                    value.map(|v| {
                        total += v;
                        total
                    })
                })
                .collect()
        })),
        "keepLastValue" => {
            let limit = match args.get(1) {
                None | Some(Value::None) => f64::INFINITY,
                _ => args.number(1)?,
            };
            Ok(args
                .series(0)?
                .into_iter()
                .map(|mut series| {
                    series.name = format!("keepLastValue({})", series.name);
                    series.path_expression = series.name.clone();
                    let mut values = series.points();
                    keep_last_value(&mut values, limit);
                    series.values = values;
                    series
                })
                .collect())
        }
        "transformNull" => transform_null(&mut args),
        "consolidateBy" => {
            let function = args.string(1)?;
            let consolidation = Consolidation::parse(&function).ok_or_else(|| {
                args.bad(format!(
                    "{function:?} is not one of sum, average, avg, min, max, first, last"
                ))
            })?;
            Ok(args
                .series(0)?
                .into_iter()
                .map(|mut series| {
                    series.consolidation = consolidation;
                    series.name = format!("consolidateBy({},\"{function}\")", series.name);
                    series.path_expression = series.name.clone();
                    series
                })
                .collect())
        }
        "alias" => {
            let new_name = args.string(1)?;
            Ok(args
                .series(0)?
                .into_iter()
                .map(|mut series| {
                    series.name = new_name.clone();
                    series
                })
                .collect())
        }
        "aliasByNode" => {
            let nodes = node_args(&args, 1)?;
            Ok(args
                .series(0)?
                .into_iter()
                .map(|mut series| {
                    series.name = aggregation_key(&series, &nodes);
                    series
                })
                .collect())
        }
        "aliasSub" => {
            let (search, replace) = (args.string(1)?, args.string(2)?);
            let pattern = regex::Regex::new(&search)
                .map_err(|error| args.bad(format!("search {search:?}: {error}")))?;
            let replacement = python_replacement(&replace);
            Ok(args
                .series(0)?
                .into_iter()
                .map(|mut series| {
                    series.name = pattern
                        .replace_all(&series.name, replacement.as_str())
                        .into_owned();
                    series
                })
                .collect())
        }
        "movingAverage" => moving_average(context, &mut args, &first_raw),
        "summarize" => summarize(&mut args),
        "hitcount" => hitcount(context, &mut args, &first_raw),
        "timeShift" => time_shift(context, &mut args, &first_raw),
        "highestMax" => {
            let n = args.integer(1)?;
            Ok(take(sorted_by(args.series(0)?, safe_max, true), n))
        }
        "highestCurrent" => {
            let n = args.integer(1)?;
            Ok(take(sorted_by(args.series(0)?, safe_last, true), n))
        }
        "lowestCurrent" => {
            let n = args.integer(1)?;
            Ok(take(sorted_by(args.series(0)?, safe_last, false), n))
        }
        "sortByMaxima" => Ok(sorted_by(args.series(0)?, safe_max, true)),
        "limit" => {
            let n = args.integer(1)?;
            Ok(take(args.series(0)?, n))
        }
        _ => Err(EvalError::UnknownFunction(name.to_string())),
    }
}

/// Python's `list[:n]` (negative `n` counts from the end).
fn take(mut list: Vec<Series>, n: i64) -> Vec<Series> {
    let keep = if n >= 0 {
        (n as usize).min(list.len())
    } else {
        list.len().saturating_sub(n.unsigned_abs() as usize)
    };
    list.truncate(keep);
    list
}

/// Sorted by `key` of the consolidated values, a missing key lowest (graphite's `keyFunc`);
/// stable, as Python's sort is, also when descending.
fn sorted_by(
    mut list: Vec<Series>,
    key: impl Fn(&[Option<f64>]) -> Option<f64>,
    descending: bool,
) -> Vec<Series> {
    let mut keyed: Vec<(f64, Series)> = list
        .drain(..)
        .map(|s| (key(&s.points()).unwrap_or(f64::NEG_INFINITY), s))
        .collect();
    keyed.sort_by(|a, b| {
        let order = a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal);
        if descending {
            order.reverse()
        } else {
            order
        }
    });
    keyed.into_iter().map(|(_, s)| s).collect()
}

fn present(values: &[Option<f64>]) -> impl Iterator<Item = f64> + '_ {
    values.iter().flatten().copied()
}

fn safe_max(values: &[Option<f64>]) -> Option<f64> {
    present(values).reduce(f64::max)
}

fn safe_min(values: &[Option<f64>]) -> Option<f64> {
    present(values).reduce(f64::min)
}

fn safe_sum(values: &[Option<f64>]) -> Option<f64> {
    let mut any = false;
    let mut total = 0.0;
    for v in present(values) {
        any = true;
        total += v;
    }
    any.then_some(total)
}

fn safe_last(values: &[Option<f64>]) -> Option<f64> {
    values.iter().rev().flatten().next().copied()
}

/// graphite's aggregation functions (`aggFuncs`) by name.
/// Combines a row or window of values, nulls included (skipped or not per function).
type Aggregator = fn(&[Option<f64>]) -> Option<f64>;

fn aggregate_function(name: &str) -> Option<Aggregator> {
    Some(match name {
        "sum" | "total" => safe_sum,
        "average" | "avg" => |values| {
            let count = present(values).count();
            safe_sum(values).map(|total| total / count as f64)
        },
        "avg_zero" => |values| {
            (!values.is_empty()).then(|| present(values).sum::<f64>() / values.len() as f64)
        },
        "min" => safe_min,
        "max" => safe_max,
        "last" | "current" => safe_last,
        "count" => |values| Some(present(values).count() as f64),
        "diff" => |values| {
            let mut present = present(values);
            let first = present.next()?;
            Some(present.fold(first, |total, v| total - v))
        },
        "multiply" => |values| {
            values
                .iter()
                .try_fold(1.0, |product, v| v.map(|v| product * v))
        },
        "median" => |values| {
            let mut sorted: Vec<f64> = present(values).collect();
            if sorted.is_empty() {
                return None;
            }
            sorted.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
            let mid = sorted.len() / 2;
            Some(if sorted.len() % 2 == 0 {
                (sorted[mid - 1] + sorted[mid]) / 2.0
            } else {
                sorted[mid]
            })
        },
        "range" | "rangeOf" => |values| Some(safe_max(values)? - safe_min(values)?),
        _ => return None,
    })
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn lcm(a: i64, b: i64) -> i64 {
    if a == b {
        return a;
    }
    let (a, b) = if a < b { (b, a) } else { (a, b) };
    a / gcd(a, b) * b
}

/// graphite's `normalize`: one step (the least common multiple), finer series consolidated
/// on read; the window from the earliest start to the latest end, cut to whole steps.
fn normalize(series: &mut [Series]) -> Option<(i64, i64, i64)> {
    let step = series.iter().map(|s| s.step).reduce(lcm)?;
    for one in series.iter_mut() {
        one.values_per_point = (step / one.step) as usize;
    }
    let start = series.iter().map(|s| s.start).min()?;
    let mut end = series.iter().map(|s| s.end).max()?;
    end -= (end - start) % step;
    Some((start, end, step))
}

/// Rows of values across series (Python's `zip_longest`, shorter series padded with nulls).
fn rows(series: &[Series]) -> Vec<Vec<Option<f64>>> {
    let points: Vec<Vec<Option<f64>>> = series.iter().map(Series::points).collect();
    let length = points.iter().map(Vec::len).max().unwrap_or(0);
    (0..length)
        .map(|i| points.iter().map(|p| p.get(i).copied().flatten()).collect())
        .collect()
}

/// Path expressions of the series without repeats, joined by commas.
fn path_expressions(series: &[Series]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for one in series {
        if !seen.contains(&one.path_expression.as_str()) {
            seen.push(&one.path_expression);
        }
    }
    seen.join(",")
}

/// graphite's `aggregate`: one series `<func>Series(<path expressions>)`.
fn aggregate(context: &Context<'_>, lists: Vec<Vec<Series>>, function: &str) -> Vec<Series> {
    let mut series: Vec<Series> = lists.into_iter().flatten().collect();
    let Some((start, end, step)) = normalize(&mut series) else {
        return Vec::new();
    };
    let combine = aggregate_function(function).expect("aggregations are known names");
    let x_files_factor = context.request.x_files_factor;
    let values = rows(&series)
        .iter()
        .map(|row| {
            let count = row.iter().flatten().count();
            if count > 0 && count as f64 / row.len() as f64 >= x_files_factor {
                combine(row)
            } else {
                None
            }
        })
        .collect();
    let name = format!("{function}Series({})", path_expressions(&series));
    let mut result = Series::new(name, start, end, step, values);
    result.x_files_factor = x_files_factor;
    vec![result]
}

fn map_values(
    list: Vec<Series>,
    name: impl Fn(&str) -> String,
    value: impl Fn(Option<f64>) -> Option<f64>,
) -> Vec<Series> {
    list.into_iter()
        .map(|mut series| {
            series.name = name(&series.name);
            series.path_expression = series.name.clone();
            for v in &mut series.values {
                *v = value(*v);
            }
            series
        })
        .collect()
}

/// A new series per input from its consolidated values (`derivative`, `integral`, …).
fn derived(
    list: Vec<Series>,
    function: &str,
    transform: impl Fn(&[Option<f64>]) -> Vec<Option<f64>>,
) -> Vec<Series> {
    list.into_iter()
        .map(|series| {
            let values = transform(&series.points());
            series.derive(format!("{function}({})", series.name), values)
        })
        .collect()
}

/// graphite's `_nonNegativeDelta`: a counter's increase, wrapping at `max` when given. A
/// null resets the previous value (graphite-web 1.1.8 raises a `TypeError` on a null when
/// `maxValue` or `minValue` is given; here the null is a gap, as without them).
fn non_negative_delta(
    value: Option<f64>,
    previous: &mut Option<f64>,
    max: Option<f64>,
    min: Option<f64>,
) -> Option<f64> {
    let Some(value) = value else {
        *previous = None;
        return None;
    };
    if max.is_some_and(|max| value > max) || min.is_some_and(|min| value < min) {
        *previous = None;
        return None;
    }
    let before = previous.replace(value)?;
    if value >= before {
        Some(value - before)
    } else if let Some(max) = max {
        Some(max + 1.0 + value - before - min.unwrap_or(0.0))
    } else {
        min.map(|min| value - min)
    }
}

/// Python's `round(x, 6)`.
fn round6(value: f64) -> f64 {
    if !value.is_finite() {
        return value;
    }
    format!("{value:.6}").parse().unwrap_or(value)
}

fn keep_last_value(values: &mut [Option<f64>], limit: f64) {
    let mut nulls = 0usize;
    let mut last: Option<f64> = None;
    for i in 0..values.len() {
        match values[i] {
            None => nulls += 1,
            Some(value) => {
                if nulls > 0 && nulls as f64 <= limit {
                    if let Some(last) = last {
                        for slot in &mut values[i - nulls..i] {
                            *slot = Some(last);
                        }
                    }
                }
                nulls = 0;
                last = Some(value);
            }
        }
    }
    if nulls > 0 && nulls as f64 <= limit {
        if let Some(last) = last {
            let length = values.len();
            for slot in &mut values[length - nulls..] {
                *slot = Some(last);
            }
        }
    }
}

fn transform_null(args: &mut Args<'_>) -> Result<Vec<Series>, EvalError> {
    let default = args.optional_number(1)?.unwrap_or(0.0);
    let reference = match args.get(2) {
        Some(Value::Series(list)) if !list.is_empty() => Some(rows(list)),
        _ => None,
    };
    let defaults: Option<Vec<Option<f64>>> = reference.map(|rows| {
        rows.iter()
            .map(|row| row.iter().any(Option::is_some).then_some(default))
            .collect()
    });
    Ok(args
        .series(0)?
        .into_iter()
        .map(|mut series| {
            series.name = match defaults {
                Some(_) => format!(
                    "transformNull({},{},referenceSeries)",
                    series.name,
                    percent_g(default)
                ),
                None => format!("transformNull({},{})", series.name, percent_g(default)),
            };
            series.path_expression = series.name.clone();
            let points = series.points();
            series.values = match &defaults {
                Some(defaults) if !defaults.is_empty() => {
                    let length = points.len().max(defaults.len());
                    (0..length)
                        .map(|i| {
                            points
                                .get(i)
                                .copied()
                                .flatten()
                                .or_else(|| defaults.get(i).copied().flatten())
                        })
                        .collect()
                }
                _ => points.iter().map(|v| v.or(Some(default))).collect(),
            };
            series
        })
        .collect())
}

fn divide_series(context: &Context<'_>, args: &mut Args<'_>) -> Result<Vec<Series>, EvalError> {
    let dividends = args.series(0)?;
    let divisors = args.series(1)?;
    if divisors.is_empty() {
        return Ok(dividends
            .into_iter()
            .map(|mut series| {
                series.name = format!("divideSeries({},MISSING)", series.name);
                series.path_expression = series.name.clone();
                series.values.iter_mut().for_each(|v| *v = None);
                series
            })
            .collect());
    }
    if divisors.len() > 1 {
        return Err(args.bad(format!(
            "the second argument must reference exactly 1 series (got {})",
            divisors.len()
        )));
    }
    let mut results = Vec::new();
    for dividend in dividends {
        let name = format!("divideSeries({},{})", dividend.name, divisors[0].name);
        let mut both = vec![dividend, divisors[0].clone()];
        let (start, end, step) = normalize(&mut both).expect("two series");
        let values = rows(&both)
            .iter()
            .map(|row| safe_div(row[0], row[1]))
            .collect();
        let mut quotient = Series::new(name, start, end, step, values);
        quotient.x_files_factor = context.request.x_files_factor;
        results.push(quotient);
    }
    Ok(results)
}

fn safe_div(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

fn percent(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    safe_div(a, b).map(|q| q * 100.0)
}

fn as_percent(context: &Context<'_>, args: &mut Args<'_>) -> Result<Vec<Series>, EvalError> {
    if args.positional.len() > 2 {
        return as_percent_by_nodes(context, args);
    }
    let mut list = args.series(0)?;
    let x_files_factor = context.request.x_files_factor;
    normalize(&mut list);
    let make = |name: String, start, end, step, values| {
        let mut series = Series::new(name, start, end, step, values);
        series.x_files_factor = x_files_factor;
        series
    };
    let total = args.get(1).cloned().unwrap_or(Value::None);
    let (total_values, total_text): (Vec<Option<f64>>, String) = match &total {
        Value::None => (
            rows(&list).iter().map(|row| safe_sum(row)).collect(),
            format!("sumSeries({})", path_expressions(&list)),
        ),
        Value::Series(totals) => {
            if totals.len() != 1 && totals.len() != list.len() {
                return Err(args.bad(
                    "the total must be missing, a number, one series or as many series as the first argument",
                ));
            }
            if totals.len() == list.len() {
                // Matched pairwise by name.
                let mut ours = list.clone();
                ours.sort_by(|a, b| a.name.cmp(&b.name));
                let mut theirs = totals.clone();
                theirs.sort_by(|a, b| a.name.cmp(&b.name));
                return Ok(ours
                    .into_iter()
                    .zip(theirs)
                    .map(|(one, total)| {
                        let name = format!("asPercent({},{})", one.name, total.name);
                        let mut both = vec![one, total];
                        let (start, end, step) = normalize(&mut both).expect("two series");
                        let values = rows(&both).iter().map(|r| percent(r[0], r[1])).collect();
                        make(name, start, end, step, values)
                    })
                    .collect());
            }
            let mut everything: Vec<Series> = list.clone();
            everything.push(totals[0].clone());
            normalize(&mut everything);
            let total = everything.pop().expect("pushed");
            list = everything;
            (total.points(), total.name.clone())
        }
        Value::Int(n) => (
            vec![Some(*n as f64); list.first().map_or(0, |s| s.points().len())],
            n.to_string(),
        ),
        Value::Float(n) => (
            vec![Some(*n); list.first().map_or(0, |s| s.points().len())],
            float_str(*n),
        ),
        _ => return Err(args.bad("the total must be a number or a series list")),
    };
    Ok(list
        .iter()
        .map(|series| {
            let points = series.points();
            let length = points.len().max(total_values.len());
            let values = (0..length)
                .map(|i| {
                    percent(
                        points.get(i).copied().flatten(),
                        total_values.get(i).copied().flatten(),
                    )
                })
                .collect();
            make(
                format!("asPercent({},{total_text})", series.name),
                series.start,
                series.end,
                series.step,
                values,
            )
        })
        .collect())
}

/// `asPercent(seriesList, total, *nodes)`: series grouped by the chosen nodes, each divided by
/// its group's total (the group's sum without `total`, else the total series of the same key).
/// A key on one side only gives an all-null `MISSING` series; graphite-web 1.1.8 then takes the
/// window of whatever series it normalised last (or fails when there was none), here it is that
/// series' own.
fn as_percent_by_nodes(
    context: &Context<'_>,
    args: &mut Args<'_>,
) -> Result<Vec<Series>, EvalError> {
    let nodes = node_args(args, 2)?;
    let list = args.series(0)?;
    let totals = match args.get(1) {
        None | Some(Value::None) => None,
        Some(Value::Series(_)) => Some(args.series(1)?),
        Some(_) => return Err(args.bad("with nodes, the total must be None or a series list")),
    };
    let x_files_factor = context.request.x_files_factor;
    let group = |series: Vec<Series>, keys: &mut Vec<String>| {
        let mut groups: Vec<(String, Vec<Series>)> = Vec::new();
        for one in series {
            let key = aggregation_key(&one, &nodes);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(one),
                None => {
                    if !keys.contains(&key) {
                        keys.push(key.clone());
                    }
                    groups.push((key, vec![one]));
                }
            }
        }
        groups
    };
    let summed = |mut members: Vec<Series>| -> Series {
        if members.len() == 1 {
            return members.pop().expect("one member");
        }
        let name = format!("sumSeries({})", path_expressions(&members));
        let (start, end, step) = normalize(&mut members).expect("members");
        let values = rows(&members).iter().map(|row| safe_sum(row)).collect();
        let mut total = Series::new(name, start, end, step, values);
        total.x_files_factor = x_files_factor;
        total
    };
    let mut keys = Vec::new();
    let meta = group(list, &mut keys);
    let total_groups: Vec<(String, Series)> = match totals {
        None => meta
            .iter()
            .map(|(key, members)| (key.clone(), summed(members.clone())))
            .collect(),
        Some(totals) => group(totals, &mut keys)
            .into_iter()
            .map(|(key, members)| (key, summed(members)))
            .collect(),
    };
    let make = |name: String, start, end, step, values| {
        let mut series = Series::new(name, start, end, step, values);
        series.x_files_factor = x_files_factor;
        series
    };
    let mut out = Vec::new();
    for key in keys {
        let total = total_groups.iter().find(|(k, _)| *k == key).map(|(_, t)| t);
        match (meta.iter().find(|(k, _)| *k == key), total) {
            (None, Some(total)) => out.push(make(
                format!("asPercent(MISSING,{})", total.name),
                total.start,
                total.end,
                total.step,
                vec![None; total.points().len()],
            )),
            (Some((_, members)), total) => {
                for one in members {
                    match total {
                        None => out.push(make(
                            format!("asPercent({},MISSING)", one.name),
                            one.start,
                            one.end,
                            one.step,
                            vec![None; one.points().len()],
                        )),
                        Some(total) => {
                            let name = format!("asPercent({},{})", one.name, total.name);
                            let mut both = vec![one.clone(), total.clone()];
                            let (start, end, step) = normalize(&mut both).expect("two series");
                            let values = rows(&both).iter().map(|r| percent(r[0], r[1])).collect();
                            out.push(make(name, start, end, step, values));
                        }
                    }
                }
            }
            (None, None) => {}
        }
    }
    Ok(out)
}

/// A node index or a tag name of `aliasByNode`/`groupByNode`.
#[derive(Debug, Clone)]
enum NodeRef {
    Index(i64),
    Tag(String),
}

fn node_args(args: &Args<'_>, from: usize) -> Result<Vec<NodeRef>, EvalError> {
    let mut nodes = Vec::new();
    for index in from..args.positional.len().max(from + 1) {
        nodes.push(match args.get(index) {
            Some(Value::Int(n)) => NodeRef::Index(*n),
            Some(Value::Float(n)) if n.fract() == 0.0 => NodeRef::Index(*n as i64),
            Some(Value::Str(tag)) => NodeRef::Tag(tag.clone()),
            _ => return Err(args.bad(format!("argument {} must be a node number", index + 1))),
        });
    }
    Ok(nodes)
}

/// graphite's `aggKey`: the chosen nodes of the series' path (the first path expression
/// inside the name when the name is a function call), joined by dots.
fn aggregation_key(series: &Series, nodes: &[NodeRef]) -> String {
    let source = if series.name.ends_with(')') {
        first_path_expression(&series.name).unwrap_or_else(|| series.name.clone())
    } else {
        series.name.clone()
    };
    let path = source.split(';').next().unwrap_or("");
    let parts: Vec<&str> = path.split('.').collect();
    nodes
        .iter()
        .map(|node| match node {
            NodeRef::Index(n) => {
                let index = if *n < 0 { parts.len() as i64 + n } else { *n };
                usize::try_from(index)
                    .ok()
                    .and_then(|i| parts.get(i))
                    .map_or_else(String::new, |p| (*p).to_string())
            }
            NodeRef::Tag(tag) if tag == "name" => series.name.clone(),
            NodeRef::Tag(_) => String::new(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn first_path_expression(name: &str) -> Option<String> {
    let mut expr = parse_target(name).ok()?;
    loop {
        match expr {
            Expr::Path(path) => return Some(path),
            Expr::Call { args, .. } => match args.into_iter().next() {
                Some(Arg::Expr(inner)) => expr = inner,
                _ => return None,
            },
        }
    }
}

fn group_by_node(context: &mut Context<'_>, args: &mut Args<'_>) -> Result<Vec<Series>, EvalError> {
    let list = args.series(0)?;
    let nodes = node_args(args, 1).map(|mut n| {
        n.truncate(1);
        n
    })?;
    let callback = args.optional_string(2, "average")?;
    let mut keys: Vec<String> = Vec::new();
    let mut groups: Vec<Vec<Series>> = Vec::new();
    for series in list {
        let key = aggregation_key(&series, &nodes);
        match keys.iter().position(|k| *k == key) {
            Some(at) => groups[at].push(series),
            None => {
                keys.push(key);
                groups.push(vec![series]);
            }
        }
    }
    let function = match callback.as_str() {
        "sumSeries" | "sum" | "total" => "sum",
        "averageSeries" | "average" | "avg" => "average",
        "minSeries" | "min" => "min",
        "maxSeries" | "max" => "max",
        "diffSeries" | "diff" => "diff",
        "multiplySeries" | "multiply" => "multiply",
        other if aggregate_function(other).is_some() => other,
        other => return Err(args.bad(format!("callback {other:?} is not an aggregation"))),
    };
    let mut out = Vec::new();
    for (key, group) in keys.into_iter().zip(groups) {
        if callback == "multiplySeries" && group.len() == 1 {
            let mut only = group;
            only[0].name = key;
            out.extend(only);
            continue;
        }
        if let Some(mut series) = aggregate(context, vec![group], function).pop() {
            series.name = key;
            out.push(series);
        }
    }
    Ok(out)
}

fn offset_seconds(args: &Args<'_>, text: &str) -> Result<i64, EvalError> {
    parse_time_offset(text).map_err(|error| args.bad(error.to_string()))
}

fn moving_average(
    context: &mut Context<'_>,
    args: &mut Args<'_>,
    first: &Arg,
) -> Result<Vec<Series>, EvalError> {
    let list = args.series(0)?;
    if list.is_empty() {
        return Ok(Vec::new());
    }
    let window = args
        .get(1)
        .cloned()
        .ok_or_else(|| args.bad("windowSize is missing"))?;
    let x_files_factor = args.optional_number(2)?;
    let (preview, window_text, points_of): (i64, String, Box<dyn Fn(i64) -> usize>) = match &window
    {
        Value::Str(text) => {
            let preview = offset_seconds(args, text)?.abs();
            (
                preview,
                format!("\"{text}\""),
                Box::new(move |step| (preview / step) as usize),
            )
        }
        Value::Int(n) if *n >= 0 => {
            let step = list.iter().map(|s| s.step).max().unwrap_or(1);
            let n = *n;
            let preview = step
                .checked_mul(n)
                .ok_or_else(|| args.bad(format!("a window of {n} points is too long")))?;
            (preview, n.to_string(), Box::new(move |_| n as usize))
        }
        _ => return Err(args.bad("windowSize must be a number of points or a time like '5min'")),
    };
    let request = context.request;
    let previews =
        context.series_over(first, request.start.saturating_sub(preview), request.end)?;
    Ok(previews
        .into_iter()
        .map(|series| {
            let window = points_of(series.step);
            let x_files_factor = x_files_factor.unwrap_or(series.x_files_factor);
            let values: Vec<Option<f64>> = (window..series.values.len().max(window))
                .map(|i| {
                    // Summed left to right, as Python's `sum` does, with no list built.
                    let (mut total, mut count) = (0.0, 0usize);
                    for v in series.values[i - window..i].iter().flatten() {
                        total += v;
                        count += 1;
                    }
                    let enough =
                        count > 0 && window > 0 && count as f64 / window as f64 >= x_files_factor;
                    enough.then(|| total / count as f64)
                })
                .collect();
            let mut moved = series.derive(
                format!("movingAverage({},{window_text})", series.name),
                values,
            );
            moved.start = series.start + preview;
            moved
        })
        .collect())
}

fn summarize(args: &mut Args<'_>) -> Result<Vec<Series>, EvalError> {
    let interval_text = args.string(1)?;
    let interval = offset_seconds(args, &interval_text)?;
    if interval <= 0 {
        return Err(args.bad(format!("interval {interval_text:?} must be positive")));
    }
    let function_name = args.optional_string(2, "sum")?;
    let function = aggregate_function(&function_name)
        .ok_or_else(|| args.bad(format!("unknown aggregation {function_name:?}")))?;
    let align_to_from = args.boolean(3, false)?;
    Ok(args
        .series(0)?
        .into_iter()
        .map(|series| {
            let (start, mut end) = if align_to_from {
                (series.start, series.end)
            } else {
                (
                    series.start - series.start.rem_euclid(interval),
                    series.end - series.end.rem_euclid(interval) + interval,
                )
            };
            let timestamps: Vec<i64> = (series.start..series.end)
                .step_by(series.step as usize)
                .collect();
            let points = series.points();
            let count = timestamps.len().min(points.len());
            let interval_points = interval as f64 / series.step as f64;
            let mut values = Vec::new();
            let (mut i, mut bucket) = (0usize, start);
            while bucket < end {
                let mut first = i;
                let mut non_null = 0usize;
                while i < count && timestamps[i] < bucket + interval {
                    if timestamps[i] <= bucket {
                        first = i;
                    }
                    if timestamps[i] >= bucket && points[i].is_some() {
                        non_null += 1;
                    }
                    i += 1;
                }
                let enough =
                    non_null > 0 && non_null as f64 / interval_points >= series.x_files_factor;
                values.push(if enough {
                    function(&points[first..i])
                } else {
                    None
                });
                bucket += interval;
            }
            if align_to_from {
                end = bucket;
            }
            let name = format!(
                "summarize({}, \"{interval_text}\", \"{function_name}\"{})",
                series.name,
                if align_to_from { ", true" } else { "" }
            );
            let mut summary = series.derive(name, values);
            summary.start = start;
            summary.end = end;
            summary.step = interval;
            summary
        })
        .collect())
}

fn hitcount(
    context: &mut Context<'_>,
    args: &mut Args<'_>,
    first: &Arg,
) -> Result<Vec<Series>, EvalError> {
    let interval_text = args.string(1)?;
    let interval = offset_seconds(args, &interval_text)?;
    if interval <= 0 {
        return Err(args.bad(format!("interval {interval_text:?} must be positive")));
    }
    let align = args.boolean(2, false)?;
    let mut list = args.series(0)?;
    if align {
        let request = context.request;
        list = context.series_over(first, truncate(request.start, interval), request.end)?;
        for series in &mut list {
            let intervals = (series.end - series.start).div_euclid(interval);
            series.end = series.start + intervals * interval + interval;
        }
    }
    Ok(list
        .into_iter()
        .map(|series| {
            let step = series.step;
            let bucket_count = ((series.end - series.start) as f64 / interval as f64).ceil() as i64;
            let bucket_count = bucket_count.max(0);
            let mut buckets: Vec<Vec<f64>> = vec![Vec::new(); bucket_count as usize];
            let new_start = series.end - bucket_count * interval;
            for (i, value) in series.points().iter().enumerate() {
                let Some(value) = *value else { continue };
                let start_time = series.start + i as i64 * step;
                let (start_bucket, start_mod) = (
                    (start_time - new_start).div_euclid(interval),
                    (start_time - new_start).rem_euclid(interval),
                );
                let end_time = start_time + step;
                let (mut end_bucket, mut end_mod) = (
                    (end_time - new_start).div_euclid(interval),
                    (end_time - new_start).rem_euclid(interval),
                );
                if end_bucket >= bucket_count {
                    end_bucket = bucket_count - 1;
                    end_mod = interval;
                }
                let mut add = |bucket: i64, amount: f64| {
                    // Python indexes from the end for a negative bucket.
                    let index = if bucket < 0 {
                        bucket_count + bucket
                    } else {
                        bucket
                    };
                    if let Some(slot) = usize::try_from(index).ok().and_then(|i| buckets.get_mut(i))
                    {
                        slot.push(amount);
                    }
                };
                if start_bucket == end_bucket {
                    if start_bucket >= 0 {
                        add(start_bucket, value * (end_mod - start_mod) as f64);
                    }
                } else {
                    if start_bucket >= 0 {
                        add(start_bucket, value * (interval - start_mod) as f64);
                    }
                    for j in start_bucket + 1..end_bucket {
                        add(j, value * interval as f64);
                    }
                    if end_mod > 0 {
                        add(end_bucket, value * end_mod as f64);
                    }
                }
            }
            let values = buckets
                .iter()
                .map(|bucket| (!bucket.is_empty()).then(|| bucket.iter().sum()))
                .collect();
            let name = format!(
                "hitcount({}, \"{interval_text}\"{})",
                series.name,
                if align { ", true" } else { "" }
            );
            let mut counted = series.derive(name, values);
            counted.start = new_start;
            counted.step = interval;
            counted
        })
        .collect())
}

fn time_shift(
    context: &mut Context<'_>,
    args: &mut Args<'_>,
    first: &Arg,
) -> Result<Vec<Series>, EvalError> {
    let list = args.series(0)?;
    let mut shift = args.string(1)?;
    if shift.starts_with(|c: char| c.is_ascii_digit()) {
        shift = format!("-{shift}");
    }
    let delta = offset_seconds(args, &shift)?;
    let reset_end = args.boolean(2, true)?;
    let Some(reference) = list.first() else {
        return Ok(Vec::new());
    };
    let request = context.request;
    let shifted = context.series_over(
        first,
        request.start.saturating_add(delta),
        request.end.saturating_add(delta),
    )?;
    Ok(shifted
        .into_iter()
        .map(|mut series| {
            series.name = format!("timeShift({}, \"{shift}\")", series.name);
            if reset_end {
                series.end = reference.end;
            } else {
                series.end = series.end - series.start + reference.start;
            }
            series.start = reference.start;
            series
        })
        .collect())
}

/// Python's `re.sub` replacement (`\1`, `\g<1>`, `\g<name>`) in the regex crate's syntax.
fn python_replacement(replacement: &str) -> String {
    let mut out = String::new();
    let mut chars = replacement.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.peek().copied() {
                Some(d) if d.is_ascii_digit() => {
                    let mut group = String::new();
                    while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                        group.push(d);
                        chars.next();
                    }
                    out.push_str(&format!("${{{group}}}"));
                }
                Some('g') => {
                    chars.next();
                    if chars.peek() == Some(&'<') {
                        chars.next();
                        let group: String = chars.by_ref().take_while(|c| *c != '>').collect();
                        out.push_str(&format!("${{{group}}}"));
                    } else {
                        out.push_str("\\g");
                    }
                }
                Some('n') => {
                    chars.next();
                    out.push('\n');
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                }
                _ => out.push('\\'),
            },
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacements_in_python_syntax() {
        assert_eq!(python_replacement(r"\1-x"), "${1}-x");
        assert_eq!(python_replacement(r"\g<2>$"), "${2}$$");
    }

    #[test]
    fn counters_wrap_at_max() {
        let mut previous = None;
        let deltas: Vec<_> = [Some(250.0), Some(5.0), None, Some(7.0), Some(9.0)]
            .iter()
            .map(|v| non_negative_delta(*v, &mut previous, Some(255.0), None))
            .collect();
        assert_eq!(deltas, vec![None, Some(11.0), None, None, Some(2.0)]);
    }

    #[test]
    fn keep_last_value_respects_the_limit() {
        let mut values = vec![Some(1.0), None, None, Some(4.0), None, None, None];
        keep_last_value(&mut values, 2.0);
        assert_eq!(
            values,
            vec![Some(1.0), Some(1.0), Some(1.0), Some(4.0), None, None, None]
        );
    }

    #[test]
    fn lcm_of_steps() {
        assert_eq!(lcm(60, 300), 300);
        assert_eq!(lcm(60, 90), 180);
    }

    #[test]
    fn round6_like_python() {
        assert_eq!(round6(1.0 / 3.0), 0.333333);
        assert_eq!(round6(2.5e-7), 0.0);
    }
}
