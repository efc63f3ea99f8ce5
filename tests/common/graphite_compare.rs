//! Comparing two Graphite `/render?format=json` answers (graphite-web's and perfpipe's, both
//! `[{"target": name, "datapoints": [[value|null, ts], ...]}, ...]`) and listing their
//! differences in words: series missing or extra (matched by name, order-insensitive, the
//! order reported separately), timestamps only in one, null against a value, and values
//! further apart than a relative 1e-9 (an absolute 1e-12 near zero). Other keys (`tags`) are
//! not compared.

use serde_json::Value;

/// How far apart two values may be and still be the same.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    /// Of the larger magnitude of the two.
    pub relative: f64,
    /// Below this difference values are equal whatever their magnitude (near zero).
    pub absolute: f64,
}

impl Default for Tolerance {
    fn default() -> Tolerance {
        Tolerance {
            relative: 1e-9,
            absolute: 1e-12,
        }
    }
}

/// At most this many point differences are spelled out per series (then a count).
pub const MAX_POINT_DIFFS: usize = 5;

/// One series of an answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(i64, Option<f64>)>,
}

/// The series of a render answer, in order, or why it is not one.
pub fn parse_render(answer: &Value) -> Result<Vec<Series>, String> {
    let list = answer
        .as_array()
        .ok_or_else(|| format!("not a JSON array: {}", short(answer)))?;
    let mut all = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let name = item["target"]
            .as_str()
            .ok_or_else(|| format!("series {i} has no string \"target\": {}", short(item)))?
            .to_string();
        let points = item["datapoints"]
            .as_array()
            .ok_or_else(|| format!("series {name:?} has no \"datapoints\" array"))?;
        let mut parsed = Vec::with_capacity(points.len());
        for point in points {
            let pair = point.as_array().filter(|p| p.len() == 2);
            let Some(pair) = pair else {
                return Err(format!("series {name:?}: point {point} is not [value, ts]"));
            };
            let value = match &pair[0] {
                Value::Null => None,
                Value::Number(n) => Some(n.as_f64().unwrap()),
                other => return Err(format!("series {name:?}: value {other} is not a number")),
            };
            let ts = pair[1]
                .as_i64()
                .or_else(|| {
                    pair[1]
                        .as_f64()
                        .filter(|t| t.fract() == 0.0)
                        .map(|t| t as i64)
                })
                .ok_or_else(|| format!("series {name:?}: timestamp {} is no integer", pair[1]))?;
            parsed.push((ts, value));
        }
        all.push(Series {
            name,
            points: parsed,
        });
    }
    Ok(all)
}

/// Whether `a` and `b` are the same value within `tolerance`.
pub fn close(a: f64, b: f64, tolerance: Tolerance) -> bool {
    if a == b || (a.is_nan() && b.is_nan()) {
        return true;
    }
    let diff = (a - b).abs();
    diff <= tolerance.absolute || diff <= tolerance.relative * a.abs().max(b.abs())
}

/// The differences of `actual` from `expected` (graphite-web's answer first), with the
/// default tolerance. Empty when they are the same.
pub fn compare_render(expected: &Value, actual: &Value) -> Vec<String> {
    compare_render_with(expected, actual, Tolerance::default())
}

/// As `compare_render`, with this tolerance.
pub fn compare_render_with(expected: &Value, actual: &Value, tolerance: Tolerance) -> Vec<String> {
    let expected = match parse_render(expected) {
        Ok(series) => series,
        Err(e) => return vec![format!("expected answer: {e}")],
    };
    let actual = match parse_render(actual) {
        Ok(series) => series,
        Err(e) => return vec![format!("actual answer: {e}")],
    };
    compare_series(&expected, &actual, tolerance)
}

/// The differences between two lists of series.
pub fn compare_series(expected: &[Series], actual: &[Series], tolerance: Tolerance) -> Vec<String> {
    let mut diffs = Vec::new();
    if expected.len() != actual.len() {
        diffs.push(format!(
            "series count: expected {}, got {}",
            expected.len(),
            actual.len()
        ));
    }
    // Pair by name, the k-th series of a name with the k-th of the same name.
    let mut used = vec![false; actual.len()];
    let mut pairs = Vec::new();
    for e in expected {
        match (0..actual.len()).find(|&j| !used[j] && actual[j].name == e.name) {
            Some(j) => {
                used[j] = true;
                pairs.push((e, &actual[j]));
            }
            None => diffs.push(format!("missing series {:?}", e.name)),
        }
    }
    for (j, a) in actual.iter().enumerate() {
        if !used[j] {
            diffs.push(format!("extra series {:?}", a.name));
        }
    }
    let expected_names: Vec<&str> = expected.iter().map(|s| s.name.as_str()).collect();
    let actual_names: Vec<&str> = actual.iter().map(|s| s.name.as_str()).collect();
    let mut sorted_expected = expected_names.clone();
    let mut sorted_actual = actual_names.clone();
    sorted_expected.sort_unstable();
    sorted_actual.sort_unstable();
    if sorted_expected == sorted_actual && expected_names != actual_names {
        diffs.push(format!(
            "series order: expected {expected_names:?}, got {actual_names:?}"
        ));
    }
    for (e, a) in pairs {
        compare_points(e, a, tolerance, &mut diffs);
    }
    diffs
}

fn compare_points(
    expected: &Series,
    actual: &Series,
    tolerance: Tolerance,
    diffs: &mut Vec<String>,
) {
    let name = &expected.name;
    if expected.points.len() != actual.points.len() {
        diffs.push(format!(
            "{name:?}: point count: expected {} ({}), got {} ({})",
            expected.points.len(),
            span(&expected.points),
            actual.points.len(),
            span(&actual.points)
        ));
    }
    let (mut i, mut j) = (0, 0);
    let mut only_expected = Vec::new();
    let mut only_actual = Vec::new();
    let mut value_diffs = Vec::new();
    let (e, a) = (&expected.points, &actual.points);
    while i < e.len() || j < a.len() {
        if j >= a.len() || (i < e.len() && e[i].0 < a[j].0) {
            only_expected.push(e[i].0);
            i += 1;
        } else if i >= e.len() || a[j].0 < e[i].0 {
            only_actual.push(a[j].0);
            j += 1;
        } else {
            let ts = e[i].0;
            match (e[i].1, a[j].1) {
                (None, None) => {}
                (Some(x), None) => value_diffs.push(format!("at {ts}: expected {x}, got null")),
                (None, Some(y)) => value_diffs.push(format!("at {ts}: expected null, got {y}")),
                (Some(x), Some(y)) => {
                    if !close(x, y, tolerance) {
                        value_diffs.push(format!("at {ts}: expected {x}, got {y}"));
                    }
                }
            }
            i += 1;
            j += 1;
        }
    }
    if !only_expected.is_empty() {
        diffs.push(format!(
            "{name:?}: {} timestamps only in expected: {}",
            only_expected.len(),
            list(&only_expected)
        ));
    }
    if !only_actual.is_empty() {
        diffs.push(format!(
            "{name:?}: {} timestamps only in actual: {}",
            only_actual.len(),
            list(&only_actual)
        ));
    }
    let count = value_diffs.len();
    for diff in value_diffs.into_iter().take(MAX_POINT_DIFFS) {
        diffs.push(format!("{name:?}: {diff}"));
    }
    if count > MAX_POINT_DIFFS {
        diffs.push(format!(
            "{name:?}: {} more differing points ({count} in all)",
            count - MAX_POINT_DIFFS
        ));
    }
}

fn span(points: &[(i64, Option<f64>)]) -> String {
    match (points.first(), points.last()) {
        (Some(first), Some(last)) => {
            let step = if points.len() > 1 {
                points[1].0 - points[0].0
            } else {
                0
            };
            format!("{}..{} step {step}", first.0, last.0)
        }
        _ => "none".to_string(),
    }
}

fn list(timestamps: &[i64]) -> String {
    let shown: Vec<String> = timestamps
        .iter()
        .take(MAX_POINT_DIFFS)
        .map(|t| t.to_string())
        .collect();
    let more = if timestamps.len() > MAX_POINT_DIFFS {
        ", …"
    } else {
        ""
    };
    format!("{}{more}", shown.join(", "))
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 200 {
        format!("{}…", text.chars().take(200).collect::<String>())
    } else {
        text
    }
}

/// Renders every target at graphite-web and at `other_base_url` (`http://host:port` of
/// another Graphite render API, perfpipe's) with the same `from`, `until` and extra
/// parameters, one request per target, and returns the differences, each prefixed with its
/// target. A target that graphite-web itself fails on is reported as such (compare those
/// against `KNOWN_GRAPHITE_WEB_FAILURES` in tests/graphite_web.rs); one the other fails on
/// while graphite-web answers is a difference.
pub fn compare_all(
    graphite: &super::graphite_web::GraphiteWeb,
    other_base_url: &str,
    targets: &[String],
    from: &str,
    until: &str,
    extra: &[(&str, &str)],
) -> Vec<String> {
    compare_all_urls(&graphite.url(), other_base_url, targets, from, until, extra)
}

/// As `compare_all`, between two base URLs (the first one is the reference).
pub fn compare_all_urls(
    reference_base_url: &str,
    other_base_url: &str,
    targets: &[String],
    from: &str,
    until: &str,
    extra: &[(&str, &str)],
) -> Vec<String> {
    use super::graphite_web::render_json_at;
    let mut diffs = Vec::new();
    for target in targets {
        let expected = render_json_at(reference_base_url, &[target], from, until, extra);
        let actual = render_json_at(other_base_url, &[target], from, until, extra);
        match (expected, actual) {
            (Ok(expected), Ok(actual)) => {
                for diff in compare_render(&expected, &actual) {
                    diffs.push(format!("{target}: {diff}"));
                }
            }
            (Err(e), Ok(_)) => diffs.push(format!("{target}: reference failed: {e}")),
            (Ok(_), Err(e)) => diffs.push(format!("{target}: other failed: {e}")),
            (Err(e1), Err(e2)) => {
                diffs.push(format!("{target}: both failed: reference {e1}; other {e2}"))
            }
        }
    }
    diffs
}

/// The differences between two `/metrics/find` answers (treejson: a list of
/// `{"text", "id", "allowChildren", "expandable", "leaf"}`), in order: graphite-web sorts by
/// name and lists branches before leaves. Other keys are not compared.
pub fn compare_find(expected: &Value, actual: &Value) -> Vec<String> {
    const KEYS: [&str; 5] = ["text", "id", "allowChildren", "expandable", "leaf"];
    let (Some(expected), Some(actual)) = (expected.as_array(), actual.as_array()) else {
        return vec![format!(
            "not both lists: expected {}, got {}",
            short(expected),
            short(actual)
        )];
    };
    let mut diffs = Vec::new();
    if expected.len() != actual.len() {
        diffs.push(format!(
            "node count: expected {}, got {}",
            expected.len(),
            actual.len()
        ));
    }
    for (i, (e, a)) in expected.iter().zip(actual).enumerate() {
        for key in KEYS {
            if e[key] != a[key] {
                diffs.push(format!(
                    "node {i} ({}): {key}: expected {}, got {}",
                    e["id"], e[key], a[key]
                ));
            }
        }
    }
    for e in expected.iter().skip(actual.len()) {
        diffs.push(format!("missing node {}", e["id"]));
    }
    for a in actual.iter().skip(expected.len()) {
        diffs.push(format!("extra node {}", a["id"]));
    }
    diffs
}

/// The `/metrics/find` queries worth comparing over the sample tree.
pub const FIND_QUERIES: &[&str] = &[
    "*",
    "h1.*",
    "h1.svc.*",
    "*.svc.*",
    "h*.svc.m1",
    "{h1,h2}.db.*",
    "h[12].svc.m?",
    "nothing.here",
];

/// `/metrics/find` of every query at graphite-web and at `other_base_url`, compared.
pub fn compare_find_all(
    graphite: &super::graphite_web::GraphiteWeb,
    other_base_url: &str,
    queries: &[&str],
) -> Vec<String> {
    use super::graphite_web::http_get;
    let mut diffs = Vec::new();
    for query in queries {
        let path = format!(
            "/metrics/find?{}",
            form_urlencoded::Serializer::new(String::new())
                .append_pair("query", query)
                .finish()
        );
        let expected = graphite.get_json(&path);
        match http_get(&format!("{other_base_url}{path}")) {
            Ok((200, body)) => match serde_json::from_str::<Value>(&body) {
                Ok(actual) => {
                    for diff in compare_find(&expected, &actual) {
                        diffs.push(format!("find {query}: {diff}"));
                    }
                }
                Err(e) => diffs.push(format!("find {query}: not JSON ({e}): {body}")),
            },
            Ok((status, body)) => diffs.push(format!("find {query}: {status} {body}")),
            Err(e) => diffs.push(format!("find {query}: {e}")),
        }
    }
    diffs
}
