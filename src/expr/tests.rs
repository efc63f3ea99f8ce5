//! Tests of the expression language: a table of texts against their outcomes or parse
//! errors over an in-memory fixture, `baseline` against hand-computed averages, its timing
//! on four weeks of one-minute data, and fuzz loops showing that parsing and evaluation
//! never panic and that `Display` writes what `parse` reads back.

use std::time::{Duration, Instant};

use super::*;

/// A minute boundary, so one-minute fixtures land on exact timestamps.
const NOW: i64 = 1_700_000_040;
const MINUTE: i64 = 60;
const DAY: i64 = 86_400;

fn name(host: &str, service: &str, item: &str) -> SeriesName {
    SeriesName::new(host, service, item)
}

fn fixture() -> MemorySeries {
    let mut source = MemorySeries::new();
    // Index i holds 10*(i+1): [0]=10 … [9]=100.
    source.insert(
        name("web", "http", "time"),
        (0..10).map(|i| (NOW - MINUTE * i, 10.0 * (i + 1) as f64)),
    );
    // Two hours of one-minute values, index i holds i+1; no step declared (median gap used).
    source.insert(
        name("a", "b", "c"),
        (0..=120).map(|i| (NOW - MINUTE * i, (i + 1) as f64)),
    );
    source.insert(name("x", "y", "z"), [(NOW, 0.0)]);
    source.insert(name("web-01", "http", "time"), [(NOW, 5.0)]);
    source.insert(name("say \"hi\"", "back\\slash", "item"), [(NOW, 7.0)]);
    source.insert(name("höst", "sérvice", "ítem"), [(NOW, 8.0)]);
    // One-minute values with a hole from 21 to 39 minutes ago.
    source.insert(
        name("gap", "s", "s"),
        (0..=60)
            .filter(|i| !(21..=39).contains(i))
            .map(|i| (NOW - MINUTE * i, i as f64)),
    );
    source.set_step(name("gap", "s", "s"), 60);
    // Exists, holds nothing.
    source.set_step(name("empty", "s", "s"), 60);
    source
}

enum Expect {
    Value(f64),
    Values(&'static [f64]),
    Missing(&'static str),
    ParseError(&'static str),
}
use Expect::{Missing, ParseError as Fails, Value, Values};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

const CASES: &[(&str, Expect)] = &[
    // Index selectors.
    ("web-http-time[0]", Value(10.0)),
    ("web-http-time[3]", Value(40.0)),
    ("web-http-time[9]", Value(100.0)),
    (
        "web-http-time[12]",
        Missing("web-http-time[12]: only 10 values stored"),
    ),
    ("x-y-z[1]", Missing("x-y-z[1]: only 1 value stored")),
    ("empty-s-s[0]", Missing("empty-s-s[0]: no values stored")),
    ("nope-s-s[0]", Missing("nope-s-s[0]: no such series")),
    // Index ranges: newest first, either order, clipped to what is stored.
    ("web-http-time[0:2]", Values(&[10.0, 20.0, 30.0])),
    ("web-http-time[2:0]", Values(&[10.0, 20.0, 30.0])),
    ("web-http-time[8:20]", Values(&[90.0, 100.0])),
    ("web-http-time[20:30]", Values(&[])),
    ("(web-http-time[0:1])", Values(&[10.0, 20.0])),
    // Time offsets: nearest within half the (median-gap) step of 60 s.
    ("a-b-c[-0M]", Value(1.0)),
    ("a-b-c[-30M]", Value(31.0)),
    ("a-b-c[-1800S]", Value(31.0)),
    ("a-b-c[-1H]", Value(61.0)),
    ("a-b-c[-30S]", Value(1.0)), // equally near to [0] and [1]: the newer wins
    ("a-b-c[-31S]", Value(2.0)),
    (
        "a-b-c[-1D]",
        Missing("a-b-c[-1D]: no value within ±30 s of 1699913640"),
    ),
    (
        "a-b-c[-1W]",
        Missing("a-b-c[-1W]: no value within ±30 s of 1699395240"),
    ),
    (
        "gap-s-s[-30M]",
        Missing("gap-s-s[-30M]: no value within ±30 s of 1699998240"),
    ),
    ("gap-s-s[-20M]", Value(20.0)),
    // Time ranges, inclusive, either order.
    ("a-b-c[-1M:-3M]", Values(&[2.0, 3.0, 4.0])),
    ("a-b-c[-3M:-1M]", Values(&[2.0, 3.0, 4.0])),
    ("count(a-b-c[-10M:-60M])", Value(51.0)),
    ("avg(a-b-c[-10M:-60M])", Value(36.0)),
    ("max(a-b-c[-10M:-60M]) * 1.2", Value(73.2)),
    ("gap-s-s[-25M:-35M]", Values(&[])),
    ("count(gap-s-s[-25M:-35M])", Value(0.0)),
    (
        "avg(gap-s-s[-25M:-35M])",
        Missing("avg(gap-s-s[-25M:-35M]): no values (empty range)"),
    ),
    (
        "a-b-c[-1D:-2D]",
        Values(&[]),
    ),
    // Functions.
    ("avg(web-http-time[0:9])", Value(55.0)),
    ("max(web-http-time[0:9])", Value(100.0)),
    ("min(web-http-time[0:9])", Value(10.0)),
    ("sum(web-http-time[0:9])", Value(550.0)),
    ("count(web-http-time[0:9])", Value(10.0)),
    ("count(web-http-time[0:99])", Value(10.0)),
    ("count(web-http-time[20:30])", Value(0.0)),
    (
        "avg(web-http-time[20:30])",
        Missing("avg(web-http-time[20:30]): no values (empty range)"),
    ),
    (
        "sum(web-http-time[20:30])",
        Missing("sum(web-http-time[20:30]): no values (empty range)"),
    ),
    (
        "max(web-http-time[20:30])",
        Missing("max(web-http-time[20:30]): no values (empty range)"),
    ),
    (
        "min(empty-s-s[0:5])",
        Missing("min(empty-s-s[0:5]): no values (empty range)"),
    ),
    ("count(nope-s-s[0:9])", Missing("nope-s-s[0:9]: no such series")),
    ("avg(1, 2, 3, 6)", Value(3.0)),
    ("max(web-http-time[0:1], 35, a-b-c[0])", Value(35.0)),
    ("min(web-http-time[0], x-y-z[0])", Value(0.0)),
    ("count(1, web-http-time[0:4])", Value(6.0)),
    ("sum(avg(1, 3), max(2, 5))", Value(7.0)),
    (
        "avg(web-http-time[0:9]) - avg(a-b-c[-10M:-60M])",
        Value(19.0),
    ),
    (
        "avg(web-http-time[0], web-http-time[10])",
        Missing("web-http-time[10]: only 10 values stored"),
    ),
    // Precedence, associativity, unary minus, parentheses, numbers.
    ("1 + 2 * 3", Value(7.0)),
    ("(1 + 2) * 3", Value(9.0)),
    ("10 - 4 - 3", Value(3.0)),
    ("10-4-3", Value(3.0)),
    ("48 / 4 / 2", Value(6.0)),
    ("2 * 3 + 4 * 5", Value(26.0)),
    ("2 + 12 / 4 - 1", Value(4.0)),
    ("-3 + 5", Value(2.0)),
    ("- - 3", Value(3.0)),
    ("-(2 + 3) * 2", Value(-10.0)),
    ("2 * -3", Value(-6.0)),
    ("1.5e2", Value(150.0)),
    ("1.5E-1 * 10", Value(1.5)),
    ("2e+1", Value(20.0)),
    (".5 + 0.25", Value(0.75)),
    ("1e-3*1000", Value(1.0)),
    ("((((7))))", Value(7.0)),
    // References in arithmetic.
    ("web-http-time[0]-web-http-time[1]", Value(-10.0)),
    ("web-http-time[0]*2+a-b-c[0]", Value(21.0)),
    ("-web-http-time[0]", Value(-10.0)),
    ("100 - web-http-time[0] / 2", Value(95.0)),
    ("10-web-http-time[0]", Value(0.0)),
    ("1-2-3", Value(-4.0)),
    // A word that can start a reference does: host "1".
    ("1-2-3[0]", Missing("1-2-3[0]: no such series")),
    // Division by zero and overflow.
    (
        "a-b-c[0] / x-y-z[0]",
        Missing("division by zero in (a-b-c[0] / x-y-z[0])"),
    ),
    ("1 / 0", Missing("division by zero in (1 / 0)")),
    (
        "2 + 1 / (web-http-time[0] - 10)",
        Missing("division by zero in (1 / (web-http-time[0] - 10))"),
    ),
    (
        "1e308 * 10",
        Missing("result is not a finite number in (1e308 * 10)"),
    ),
    // Quoted names, escapes, non-ASCII, whitespace.
    ("\"web-01\"-\"http\"-\"time\"[0]", Value(5.0)),
    ("\"web-01\"-http-time[0]", Value(5.0)),
    ("\"say \\\"hi\\\"\"-\"back\\\\slash\"-item[0]", Value(7.0)),
    ("höst-sérvice-ítem[0]", Value(8.0)),
    ("  avg ( web-http-time [ 0 : 9 ] )  ", Value(55.0)),
    ("\tweb-http-time[ 3 ]\n*\n2", Value(80.0)),
    // Baseline over the short fixture: no data a day back.
    (
        "baseline(a-b-c, 1W)",
        Missing("baseline(a-b-c, 1W): no value within ±30 s of this time of day on any of the 7 previous days"),
    ),
    (
        "baseline(nope-s-s, 4W, weekday)",
        Missing("baseline(nope-s-s, 4W, weekday): no such series"),
    ),
    // Parse errors.
    ("", Fails("expected an expression at 0")),
    ("   ", Fails("expected an expression at 3")),
    ("web-http-time[0", Fails("expected ']' or ':' at 15")),
    ("avg(web-http-time[0:9)", Fails("expected ']' at 21")),
    (
        "web-http",
        Fails("expected '-' and an item name (a reference is host-service-item) at 8"),
    ),
    (
        "a - b - c[0]",
        Fails("expected '-' and a service name (a reference is host-service-item) at 1"),
    ),
    (
        "web-http-time",
        Fails("expected '[' and a selector (names containing '-' must be quoted) at 13"),
    ),
    (
        "w-x-y-z[0]",
        Fails("expected '[' and a selector (names containing '-' must be quoted) at 5"),
    ),
    ("1 +", Fails("expected an expression at 3")),
    ("(1 + 2", Fails("expected ')' at 6")),
    ("a-b-c[-30M] * (2", Fails("expected ')' at 16")),
    (
        "\"web-01-http-time[0]",
        Fails("unterminated quoted name starting at 0"),
    ),
    (
        "\"a\\q\"-b-c[0]",
        Fails("unknown escape in quoted name at 2 (only \\\" and \\\\ escape)"),
    ),
    (
        "foo(1)",
        Fails("unknown function 'foo' at 0 (known: avg, max, min, sum, count, baseline)"),
    ),
    ("a-b-c[-30]", Fails("expected a time unit (S, M, H, D or W) at 9")),
    ("a-b-c[-M]", Fails("expected a number of time units, as in -30M at 7")),
    (
        "a-b-c[30M]",
        Fails("time offsets point into the past and are written with '-', as in -30M at 6"),
    ),
    ("a-b-c[0:-5M]", Fails("expected an index, as the range starts with one at 8")),
    (
        "a-b-c[-5M:3]",
        Fails("expected a time offset such as -60M, as the range starts with one at 10"),
    ),
    (
        "a-b-c[0:9] + 1",
        Fails("a range can only be a function argument or the whole expression, at 0"),
    ),
    (
        "-a-b-c[0:3]",
        Fails("a range can only be a function argument or the whole expression, at 1"),
    ),
    (
        "2 * (a-b-c[0:3])",
        Fails("a range can only be a function argument or the whole expression, at 4"),
    ),
    ("1 2", Fails("expected an operator or the end of the expression at 2")),
    ("avg()", Fails("expected an expression at 4")),
    ("avg(1,)", Fails("expected an expression at 6")),
    ("avg(a-b-c[0:9]", Fails("expected ',' or ')' at 14")),
    ("a-b-c[0] +* 2", Fails("expected an expression at 10")),
    ("a-b-c[99999999999999999999999]", Fails("index out of range at 6")),
    ("a-b-c[-99999999999999W]", Fails("time offset out of range at 6")),
    ("1e999", Fails("number out of range at 0")),
    (
        "a-b-c[x]",
        Fails("expected an index such as 0 or a time offset such as -30M at 6"),
    ),
    ("'a'-b-c[0]", Fails("expected an expression at 0")),
    (
        "baseline(a-b-c, 4W, monday)",
        Fails("expected 'weekday' at 20"),
    ),
    (
        "baseline(a-b-c[3], 4W)",
        Fails("baseline takes the series without selector or with [0] at 15"),
    ),
    ("baseline(a-b-c, 0W)", Fails("baseline weeks must be 1 to 520 at 16")),
    ("baseline(a-b-c, 521W)", Fails("baseline weeks must be 1 to 520 at 16")),
    ("baseline(a-b-c, 4D)", Fails("expected a number of weeks such as 4W at 16")),
    ("baseline(a-b-c)", Fails("expected ',' and a number of weeks such as 4W at 14")),
    ("baseline(a-b-c, 4W", Fails("expected ',' or ')' at 18")),
];

#[test]
fn table_of_expressions() {
    let source = fixture();
    let mut failures = Vec::new();
    for (text, expect) in CASES {
        let parsed = parse(text);
        let problem = match (expect, &parsed) {
            (Fails(message), Err(error)) => {
                (error.to_string() != *message).then(|| format!("error {error}"))
            }
            (Fails(_), Ok(expr)) => Some(format!("parsed as {expr}")),
            (_, Err(error)) => Some(format!("error {error}")),
            (expect, Ok(expr)) => {
                let outcome = evaluate(expr, &source, NOW);
                let matches = match (expect, &outcome) {
                    (Value(want), Outcome::Value(got)) => close(*want, *got),
                    (Values(want), Outcome::Values(got)) => {
                        want.len() == got.len() && want.iter().zip(got).all(|(a, b)| close(*a, *b))
                    }
                    (Missing(want), Outcome::Missing { reason }) => reason == want,
                    _ => false,
                };
                (!matches).then(|| format!("{outcome:?}"))
            }
        };
        if let Some(problem) = problem {
            failures.push(format!("{text:?}: got {problem}"));
        }
    }
    assert!(CASES.len() >= 60, "only {} cases", CASES.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn parse_errors_report_their_offset() {
    let error = parse("avg(web-http-time[0:9)").unwrap_err();
    assert_eq!(error.offset(), 21);
    assert_eq!(
        error,
        ParseError::Expected {
            expected: "']'",
            offset: 21
        }
    );
}

#[test]
fn nesting_is_bounded() {
    let deep = format!("{}1{}", "(".repeat(500), ")".repeat(500));
    assert_eq!(parse(&deep), Err(ParseError::TooDeep { offset: 100 }));
    let shallow = format!("{}1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert_eq!(parse(&shallow), Ok(Expr::Number(1.0)));
    let long_chain = vec!["1"; 5000].join(" + ");
    assert!(matches!(
        parse(&long_chain),
        Err(ParseError::TooDeep { .. })
    ));
    let minus = format!("{}1", "-".repeat(5000));
    assert!(matches!(parse(&minus), Err(ParseError::TooDeep { .. })));
    let calls = format!("{}1{}", "avg(".repeat(500), ")".repeat(500));
    assert!(matches!(parse(&calls), Err(ParseError::TooDeep { .. })));
}

#[test]
fn parse_builds_the_expected_tree() {
    let expr = parse("max(\"web-01\"-http-time[-10M:-60M]) * 1.2").unwrap();
    assert_eq!(
        expr,
        Expr::Binary {
            op: BinaryOp::Multiply,
            left: Box::new(Expr::Aggregate {
                function: Aggregate::Max,
                arguments: vec![Expr::Range {
                    series: name("web-01", "http", "time"),
                    range: RangeSelector::Ago {
                        newest: TimeOffset {
                            amount: 10,
                            unit: TimeUnit::Minutes
                        },
                        oldest: TimeOffset {
                            amount: 60,
                            unit: TimeUnit::Minutes
                        },
                    },
                }],
            }),
            right: Box::new(Expr::Number(1.2)),
        }
    );
    assert_eq!(
        expr.to_string(),
        "(max(\"web-01\"-http-time[-10M:-60M]) * 1.2)"
    );
    assert_eq!(expr.series(), vec![&name("web-01", "http", "time")]);
    assert_eq!(
        parse("baseline(a-b-c[0], 4W, weekday)").unwrap(),
        Expr::Baseline {
            series: name("a", "b", "c"),
            weeks: 4,
            same_weekday: true
        }
    );
    assert_eq!(
        parse("baseline( a-b-c , 4W )").unwrap(),
        parse("baseline(a-b-c[ 0 ], 4W)").unwrap()
    );
}

#[test]
fn outcome_serializes_to_the_documented_json() {
    let json = |outcome: Outcome| serde_json::to_string(&outcome).unwrap();
    assert_eq!(json(Outcome::Value(12.5)), r#"{"value":12.5}"#);
    assert_eq!(
        json(Outcome::Values(vec![3.0, 2.5])),
        r#"{"values":[3.0,2.5]}"#
    );
    assert_eq!(
        json(Outcome::Missing {
            reason: "web-http-time[12]: only 10 values stored".into()
        }),
        r#"{"value":null,"reason":"web-http-time[12]: only 10 values stored"}"#
    );
}

#[test]
fn memory_series_answers_by_index_and_time() {
    let mut source = MemorySeries::new();
    let series = name("h", "s", "i");
    // Out of order, with a duplicate timestamp (the last given wins) and a NaN (dropped).
    source.insert(
        series.clone(),
        [(30, 3.0), (10, 1.0), (20, 9.0), (20, 2.0), (25, f64::NAN)],
    );
    assert_eq!(source.value_count(&series), Some(3));
    assert_eq!(source.latest(&series, 0), Some((30, 3.0)));
    assert_eq!(source.latest(&series, 2), Some((10, 1.0)));
    assert_eq!(source.latest(&series, 3), None);
    assert_eq!(source.latest(&series, usize::MAX), None);
    assert_eq!(
        source.latest_range(&series, 1, 9),
        vec![(20, 2.0), (10, 1.0)]
    );
    assert_eq!(source.latest_range(&series, 3, 9), vec![]);
    assert_eq!(source.nearest(&series, 15, 5), Some((20, 2.0))); // tie: the newer
    assert_eq!(source.nearest(&series, 14, 5), Some((10, 1.0)));
    assert_eq!(source.nearest(&series, 40, 9), None);
    assert_eq!(source.nearest(&series, 40, 10), Some((30, 3.0)));
    assert_eq!(source.nearest(&series, 0, 10), Some((10, 1.0)));
    assert_eq!(source.nearest(&series, i64::MIN, i64::MAX), None);
    assert_eq!(source.nearest(&series, 10, -1), None);
    assert_eq!(source.between(&series, 10, 20), vec![(20, 2.0), (10, 1.0)]);
    assert_eq!(source.between(&series, 21, 29), vec![]);
    assert_eq!(source.between(&series, 30, 10), vec![]);
    assert_eq!(source.value_count(&name("h", "s", "other")), None);
    assert_eq!(source.step(&series, 0), None);
}

/// 29 days of one-minute values, 1000 everywhere except exactly `d` days before `NOW`,
/// which holds `d` (for d = 1..=28).
fn four_weeks_of_minutes(missing_days: &[i64]) -> MemorySeries {
    let mut source = MemorySeries::new();
    let start = NOW - 29 * DAY;
    let samples = (0..=(NOW - start) / MINUTE).filter_map(|minute| {
        let at = start + minute * MINUTE;
        let days_back = (NOW - at) / DAY;
        let on_sampled_time = (NOW - at) % DAY == 0 && (1..=28).contains(&days_back);
        if on_sampled_time && missing_days.contains(&days_back) {
            return None;
        }
        Some((
            at,
            if on_sampled_time {
                days_back as f64
            } else {
                1000.0
            },
        ))
    });
    source.insert(name("base", "line", "data"), samples);
    source
}

fn value_at(source: &MemorySeries, text: &str, now: i64) -> Outcome {
    evaluate(&parse(text).unwrap(), source, now)
}

#[test]
fn baseline_averages_the_same_time_of_day() {
    let source = four_weeks_of_minutes(&[]);
    // Every day of the previous 4 weeks: the average of 1..=28.
    assert_eq!(
        value_at(&source, "baseline(base-line-data, 4W)", NOW),
        Outcome::Value(14.5)
    );
    assert_eq!(
        value_at(&source, "baseline(base-line-data[0], 4W)", NOW),
        Outcome::Value(14.5)
    );
    // Only the same weekday: days 7, 14, 21, 28.
    assert_eq!(
        value_at(&source, "baseline(base-line-data, 4W, weekday)", NOW),
        Outcome::Value(17.5)
    );
    assert_eq!(
        value_at(&source, "baseline(base-line-data, 1W)", NOW),
        Outcome::Value(4.0)
    );
    assert_eq!(
        value_at(&source, "baseline(base-line-data, 2W, weekday)", NOW),
        Outcome::Value(10.5)
    );
    let scaled = value_at(&source, "baseline(base-line-data, 4W) * 1.1", NOW);
    assert!(close(scaled.value().unwrap(), 15.95));
    // 20 s off the minute grid: still within half the 60 s median gap.
    assert_eq!(
        value_at(&source, "baseline(base-line-data, 4W)", NOW + 20),
        Outcome::Value(14.5)
    );
}

#[test]
fn baseline_uses_the_step_the_source_declares() {
    let mut source = four_weeks_of_minutes(&[]);
    source.set_step(name("base", "line", "data"), 60);
    assert_eq!(
        value_at(&source, "baseline(base-line-data, 4W)", NOW + 29),
        Outcome::Value(14.5)
    );
    // Exactly half a step off the grid, two values are equally near: the newer (1000) wins.
    assert_eq!(
        value_at(&source, "baseline(base-line-data, 4W)", NOW + 30),
        Outcome::Value(1000.0)
    );
    // A declared step of 20 s allows only ±10 s: nothing is near enough 20 s off the grid.
    source.set_step(name("base", "line", "data"), 20);
    assert_eq!(
        value_at(&source, "baseline(base-line-data, 4W, weekday)", NOW + 20),
        Outcome::Missing {
            reason: "baseline(base-line-data, 4W, weekday): no value within ±10 s of this time \
                     of day on any of the 4 previous same weekdays"
                .into()
        }
    );
}

#[test]
fn baseline_leaves_out_missing_days() {
    // Day 7 missing: its neighbours are 60 s away, beyond the ±30 s tolerance.
    let source = four_weeks_of_minutes(&[7]);
    let every_day = value_at(&source, "baseline(base-line-data, 4W)", NOW);
    assert!(close(every_day.value().unwrap(), (406.0 - 7.0) / 27.0));
    assert_eq!(
        value_at(&source, "baseline(base-line-data, 4W, weekday)", NOW),
        Outcome::Value(21.0)
    );
    // Every sampled weekday missing: null, while the other days still give a baseline.
    let source = four_weeks_of_minutes(&[7, 14, 21, 28]);
    assert_eq!(
        value_at(&source, "baseline(base-line-data, 4W)", NOW),
        Outcome::Value((406.0 - 70.0) / 24.0)
    );
    assert_eq!(
        value_at(&source, "baseline(base-line-data, 4W, weekday)", NOW),
        Outcome::Missing {
            reason: "baseline(base-line-data, 4W, weekday): no value within ±30 s of this time \
                     of day on any of the 4 previous same weekdays"
                .into()
        }
    );
}

/// Times `runs` evaluations; returns (min, median, max).
fn time_evaluations(expr: &Expr, source: &MemorySeries, runs: usize) -> [Duration; 3] {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            let outcome = evaluate(expr, source, NOW);
            let elapsed = started.elapsed();
            assert_eq!(outcome, Outcome::Value(14.5));
            elapsed
        })
        .collect();
    times.sort();
    [times[0], times[runs / 2], times[runs - 1]]
}

#[test]
fn baseline_over_four_weeks_of_minutes_is_fast() {
    let mut source = four_weeks_of_minutes(&[]);
    let expr = parse("baseline(base-line-data, 4W)").unwrap();
    let [min, median, max] = time_evaluations(&expr, &source, 200);
    println!(
        "baseline 4W over {} one-minute values, step from the median gap: \
         min {min:?}, median {median:?}, max {max:?}",
        source.value_count(&name("base", "line", "data")).unwrap()
    );
    source.set_step(name("base", "line", "data"), 60);
    let [min_declared, median_declared, max_declared] = time_evaluations(&expr, &source, 200);
    println!(
        "baseline 4W, step declared by the source: \
         min {min_declared:?}, median {median_declared:?}, max {max_declared:?}"
    );
    if !cfg!(debug_assertions) {
        assert!(median < Duration::from_millis(5), "median {median:?}");
        assert!(
            median_declared < Duration::from_millis(5),
            "median {median_declared:?}"
        );
    }
}

/// A small deterministic generator (xorshift), so the fuzz loops need no crate.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Parses `text`; when it parses, evaluates it and checks `Display` reads back the same.
fn check_never_panics(text: &str, source: &MemorySeries) -> bool {
    match parse(text) {
        Ok(expr) => {
            let shown = expr.to_string();
            assert_eq!(
                parse(&shown).as_ref(),
                Ok(&expr),
                "{text:?} shown as {shown:?}"
            );
            if let Outcome::Value(value) = evaluate(&expr, source, NOW) {
                assert!(value.is_finite());
            }
            true
        }
        Err(error) => {
            assert!(error.offset() <= text.len(), "{text:?}: {error}");
            false
        }
    }
}

#[test]
fn fuzz_random_characters() {
    let source = fixture();
    let alphabet: Vec<char> = "ab-c[]():,\"\\ 019.eEMHWS+*/é\t'{}xyzw".chars().collect();
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    for _ in 0..30_000 {
        let length = random.below(24);
        let text: String = (0..length)
            .map(|_| alphabet[random.below(alphabet.len())])
            .collect();
        check_never_panics(&text, &source);
    }
}

#[test]
fn fuzz_random_tokens() {
    let source = fixture();
    let tokens = [
        "a-b-c",
        "web-http-time",
        "x-y-z",
        "\"web-01\"",
        "-http-time",
        "nope-s-s",
        "[0]",
        "[3]",
        "[-30M]",
        "[-1H]",
        "[0:9]",
        "[-10M:-60M]",
        "[",
        "]",
        ":",
        "(",
        ")",
        "+",
        "-",
        "*",
        "/",
        ",",
        " ",
        "1",
        "2.5",
        "0",
        "1e-3",
        "1e308",
        "avg(",
        "max(",
        "min(",
        "sum(",
        "count(",
        "baseline(",
        "4W",
        "weekday",
        "\"",
        "\\",
    ];
    let mut random = Random(0x2545_f491_4f6c_dd1d);
    let mut parsed = 0;
    for _ in 0..30_000 {
        let length = 1 + random.below(10);
        let text: String = (0..length)
            .map(|_| tokens[random.below(tokens.len())])
            .collect();
        if check_never_panics(&text, &source) {
            parsed += 1;
        }
    }
    // The generator must reach the evaluator, not only the error paths.
    assert!(parsed > 300, "only {parsed} of the random texts parsed");
}

#[test]
fn hand_built_trees_do_not_break_evaluation() {
    let source = fixture();
    let range = Expr::Range {
        series: name("web", "http", "time"),
        range: RangeSelector::Indexes {
            newest: 5,
            oldest: 0,
        },
    };
    let sum = Expr::Binary {
        op: BinaryOp::Add,
        left: Box::new(range.clone()),
        right: Box::new(Expr::Number(1.0)),
    };
    assert!(matches!(
        evaluate(&sum, &source, NOW),
        Outcome::Missing { .. }
    ));
    assert_eq!(
        evaluate(&range, &source, NOW),
        Outcome::Values(vec![10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
    );
    let empty_call = Expr::Aggregate {
        function: Aggregate::Avg,
        arguments: vec![],
    };
    assert!(matches!(
        evaluate(&empty_call, &source, NOW),
        Outcome::Missing { .. }
    ));
    let no_weeks = Expr::Baseline {
        series: name("a", "b", "c"),
        weeks: 0,
        same_weekday: false,
    };
    assert!(matches!(
        evaluate(&no_weeks, &source, NOW),
        Outcome::Missing { .. }
    ));
    assert!(matches!(
        evaluate(&Expr::Number(f64::NAN), &source, NOW),
        Outcome::Missing { .. }
    ));
    let mut deep = Expr::Number(1.0);
    for _ in 0..1000 {
        deep = Expr::Negate(Box::new(deep));
    }
    assert!(matches!(
        evaluate(&deep, &source, NOW),
        Outcome::Missing { .. }
    ));
    let far = Expr::Value {
        series: name("a", "b", "c"),
        pick: Pick::Ago(TimeOffset {
            amount: u64::MAX,
            unit: TimeUnit::Weeks,
        }),
    };
    assert!(matches!(
        evaluate(&far, &source, i64::MIN),
        Outcome::Missing { .. }
    ));
}
