//! Opsview's graph API, so the graph UIs and scripts written for Opsview can read perfpipe:
//! `GET /rest/graph` (ranges of series as `[time, value]` pairs with a min/max/average
//! summary) and `GET /rest/runtime/performancemetric` (the names that have performance data),
//! as `shared/protocols/opsview-graph.md` specifies them.
//!
//! Owns the Opsview `duration` format ([`parse_duration`]), the wildcard matching of the
//! selections (`*` in `/rest/graph`, `%` in the listing; [`wildcard_match`]) and the shape of
//! both answers. It reads nothing itself: ranges come from the query machinery of
//! `/api/v1/query` ([`super::query::read_series`]: the first backend of each series' owner,
//! owners asked in parallel) and names from the catalogues of every node
//! ([`super::query::cluster_series`]). Guarantees: a series that does not exist is left out of
//! a graph answer, never an error; a node or store that cannot be read leaves its series out
//! too, and the answer says `"partial": true`; `rows` and `total` are strings, as in Opsview's
//! answers. Opsview keywords do not exist in perfpipe: `keyword` is accepted and ignored with a
//! warning in the log.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use perfpipe_backend::{Consolidation, RangeQuery, SeriesKey};
use serde_json::{json, Value};

use super::query::{self, SeriesFilter};
use super::{ApiError, Node};

/// Seconds in an Opsview month: Opsview's own format has no calendar, so a month is 30 days.
pub const MONTH_SECONDS: i64 = 30 * 86_400;

/// The default of `duration`: one day.
const DEFAULT_DURATION: i64 = 86_400;

/// Why a `duration` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("duration is empty")]
    Empty,
    #[error("duration {text:?}: expected a number at byte {at}")]
    NoNumber { text: String, at: usize },
    #[error(
        "duration {text:?}: the number at byte {at} has no unit (h, d, w, m, minutes, months)"
    )]
    NoUnit { text: String, at: usize },
    #[error(
        "duration {text:?}: unknown unit {unit:?} at byte {at} (h, d, w, m or minutes, months)"
    )]
    UnknownUnit {
        text: String,
        unit: String,
        at: usize,
    },
    #[error("duration {text:?} is too long")]
    Overflow { text: String },
}

/// Opsview's `duration`: one or more `<number><unit>` with `h` hours, `d` days, `w` weeks, `m`
/// or `minutes` minutes, `months` months of 30 days ([`MONTH_SECONDS`]); `3145h`, `131d1h`,
/// `18w5d1h`. Answers seconds.
pub fn parse_duration(text: &str) -> Result<i64, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let bytes = text.as_bytes();
    let mut total: i64 = 0;
    let mut at = 0;
    let overflow = || DurationError::Overflow {
        text: text.to_owned(),
    };
    while at < bytes.len() {
        let digits = bytes[at..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 {
            return Err(DurationError::NoNumber {
                text: text.to_owned(),
                at,
            });
        }
        let number: i64 = text[at..at + digits].parse().map_err(|_| overflow())?;
        let unit_at = at + digits;
        let letters = bytes[unit_at..]
            .iter()
            .take_while(|b| b.is_ascii_alphabetic())
            .count();
        let unit = &text[unit_at..unit_at + letters];
        let seconds = match unit {
            "" => {
                return Err(DurationError::NoUnit {
                    text: text.to_owned(),
                    at,
                })
            }
            "m" | "minutes" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            "months" => MONTH_SECONDS,
            other => {
                return Err(DurationError::UnknownUnit {
                    text: text.to_owned(),
                    unit: other.to_owned(),
                    at: unit_at,
                })
            }
        };
        total = number
            .checked_mul(seconds)
            .and_then(|span| total.checked_add(span))
            .ok_or_else(overflow)?;
        at = unit_at + letters;
    }
    Ok(total)
}

/// Whether `text` matches `pattern`, in which `wildcard` stands for any run of characters
/// (also none) and every other character for itself (case-sensitive).
pub fn wildcard_match(pattern: &str, text: &str, wildcard: char) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Where the last wildcard was, and the text position it is tried to cover up to.
    let mut resume: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == wildcard {
            resume = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star, covered)) = resume {
            p = star + 1;
            t = covered + 1;
            resume = Some((star, covered + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == wildcard)
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

/// `GET /rest/graph`.
pub async fn graph(
    State(node): State<Arc<Node>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let _slot = super::query_slot(&node)?;
    let raw = raw.unwrap_or_default();
    let now = query::now();
    let mut keys: Vec<SeriesKey> = Vec::new();
    let mut filter = SeriesFilter::default();
    let (mut start, mut end, mut duration) = (None, None, None);
    let mut keywords = Vec::new();
    let mut with_offset = false;
    for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
        match name.as_ref() {
            "hsm" => keys.push(query::parse_hsm(&value).map_err(bad_request)?),
            "start" => {
                start = Some(
                    query::parse_time(&value, now)
                        .map_err(|e| bad_request(format!("start: {e}")))?,
                )
            }
            "end" => {
                end = Some(
                    query::parse_time(&value, now).map_err(|e| bad_request(format!("end: {e}")))?,
                )
            }
            "duration" => {
                duration = Some(parse_duration(&value).map_err(|e| bad_request(e.to_string()))?)
            }
            "hostname" => filter.hosts.push(value.into_owned()),
            "servicename" => filter.services.push(value.into_owned()),
            "metricname" => filter.metrics.push(value.into_owned()),
            "keyword" => keywords.push(value.into_owned()),
            "include_offset_timezone" => {
                with_offset = match value.as_ref() {
                    "1" => true,
                    "0" | "" => false,
                    other => {
                        return Err(bad_request(format!(
                            "include_offset_timezone {other:?}: 0 or 1"
                        )))
                    }
                }
            }
            // jQuery's cache breaker, which Opsview's own pages send.
            "_" => {}
            other => {
                return Err(bad_request(format!(
                    "unknown parameter {other:?} (hsm, start, end, duration, hostname, \
                     servicename, metricname, keyword, include_offset_timezone)"
                )))
            }
        }
    }
    if !keywords.is_empty() {
        tracing::warn!(
            keywords = ?keywords,
            "/rest/graph: perfpipe has no Opsview keywords; keyword parameters ignored"
        );
    }
    if keys.is_empty() && filter.is_empty() {
        return Err(bad_request(
            "name the series: hsm=host::service::metric, or hostname, servicename, metricname \
             (with * wildcards)",
        ));
    }
    let end = end.unwrap_or(now);
    let start = start.unwrap_or(end - duration.unwrap_or(DEFAULT_DURATION));
    if start >= end {
        return Err(bad_request(format!(
            "start {start} is not before end {end}"
        )));
    }
    let mut partial = false;
    let mut missing_nodes = Vec::new();
    if !filter.is_empty() {
        let (found, missing) = query::cluster_series(&node, &filter, false).await?;
        let mut seen: HashSet<SeriesKey> = keys.iter().cloned().collect();
        for entry in found {
            if seen.insert(entry.key.clone()) {
                keys.push(entry.key);
            }
        }
        if !missing.is_empty() {
            partial = true;
            missing_nodes = missing;
        }
    }
    let range = RangeQuery {
        start,
        end,
        step: None,
        consolidation: Consolidation::Average,
    };
    query::check_range(&node, &range, keys.len())?;
    let (answers, unreachable) = query::read_series(&node, &keys, range, false, None).await?;
    partial |= unreachable;
    let offset = if with_offset {
        local_utc_offset(now)
    } else {
        0
    };
    let mut list = Vec::with_capacity(answers.len());
    for answer in answers {
        if let Some(error) = answer["error"].as_str() {
            if error != "no such series" {
                partial = true;
                tracing::warn!(series = %answer["hsm"], error, "/rest/graph: series left out");
            }
            continue;
        }
        list.push(graph_entry(&answer, offset));
    }
    let mut answer = json!({ "list": list });
    if partial {
        answer["partial"] = json!(true);
    }
    if !missing_nodes.is_empty() {
        answer["missing"] = json!(missing_nodes);
    }
    Ok(Json(answer))
}

/// One series of a `/rest/graph` answer from one series of the query machinery's.
fn graph_entry(series: &Value, offset: i64) -> Value {
    let start = series["start"].as_i64().unwrap_or(0);
    let step = series["step"].as_i64().unwrap_or(1);
    let values = series["values"].as_array().cloned().unwrap_or_default();
    let present: Vec<f64> = values.iter().filter_map(Value::as_f64).collect();
    let data: Vec<Value> = values
        .into_iter()
        .enumerate()
        .map(|(i, value)| json!([start + i as i64 * step + offset, value]))
        .collect();
    json!({
        "label": series["hsm"],
        "uom": series["uom"].as_str().unwrap_or(""),
        "description": description(&present),
        "data": data,
    })
}

/// `Min: x<br />Max: y<br />Average: z` with three decimals; `nan` for each when no value is
/// present (as rrdtool prints an empty summary).
fn description(values: &[f64]) -> String {
    if values.is_empty() {
        return "Min: nan<br />Max: nan<br />Average: nan".into();
    }
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let average = values.iter().sum::<f64>() / values.len() as f64;
    format!("Min: {min:.3}<br />Max: {max:.3}<br />Average: {average:.3}")
}

/// The node's offset from UTC at `at` (seconds east), from its time zone: `TZ` (a zone name,
/// optionally with a leading `:` or as a path under `zoneinfo/`), else the zone
/// `/etc/localtime` links to, else `/etc/timezone`; UTC when none names a zone chrono-tz knows.
pub fn local_utc_offset(at: i64) -> i64 {
    use chrono::{Offset, TimeZone};
    let Some(zone) = local_zone() else {
        return 0;
    };
    let Some(utc) = chrono::DateTime::from_timestamp(at, 0) else {
        return 0;
    };
    i64::from(
        zone.offset_from_utc_datetime(&utc.naive_utc())
            .fix()
            .local_minus_utc(),
    )
}

fn local_zone() -> Option<chrono_tz::Tz> {
    let from_path = |path: &str| {
        path.rsplit_once("zoneinfo/")
            .map(|(_, name)| name.to_owned())
    };
    let name = match std::env::var("TZ") {
        Ok(tz) if !tz.is_empty() => {
            let tz = tz.strip_prefix(':').unwrap_or(&tz);
            from_path(tz).unwrap_or_else(|| tz.to_owned())
        }
        _ => std::fs::read_link("/etc/localtime")
            .ok()
            .and_then(|target| from_path(&target.to_string_lossy()))
            .or_else(|| {
                std::fs::read_to_string("/etc/timezone")
                    .ok()
                    .map(|text| text.trim().to_owned())
            })?,
    };
    match name.parse::<chrono_tz::Tz>() {
        Ok(zone) => Some(zone),
        Err(_) => {
            tracing::warn!(zone = name, "unknown time zone; offsets taken as UTC");
            None
        }
    }
}

/// Which part of the names `/rest/runtime/performancemetric` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listed {
    Host,
    Service,
    Metric,
    Whole,
}

/// `GET /rest/runtime/performancemetric`.
pub async fn performance_metric(
    State(node): State<Arc<Node>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let raw = raw.unwrap_or_default();
    let mut filter = SeriesFilter::default();
    let mut listed = Listed::Whole;
    let mut rows: Option<usize> = Some(50);
    let mut page: usize = 1;
    // `%` is Opsview's wildcard here; the catalogue filter's is `*`.
    let pattern = |value: &str| value.replace('%', "*");
    for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
        match name.as_ref() {
            "host" => filter.hosts.push(pattern(&value)),
            "service" => filter.services.push(pattern(&value)),
            "metric" => filter.metrics.push(pattern(&value)),
            "type" => {
                listed = match value.as_ref() {
                    "host" => Listed::Host,
                    "service" => Listed::Service,
                    "metric" => Listed::Metric,
                    other => {
                        return Err(bad_request(format!(
                            "type {other:?}: host, service or metric"
                        )))
                    }
                }
            }
            "rows" => {
                rows = match value.as_ref() {
                    "all" => None,
                    number => Some(number.parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(
                        || bad_request(format!("rows {number:?}: a positive number or all")),
                    )?),
                }
            }
            "page" => {
                page = value
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| {
                        bad_request(format!(
                            "page {value:?}: a positive number (1 is the first)"
                        ))
                    })?
            }
            "_" => {}
            other => {
                return Err(bad_request(format!(
                    "unknown parameter {other:?} (host, service, metric, type, rows, page)"
                )))
            }
        }
    }
    let (found, missing) = query::cluster_series(&node, &filter, false).await?;
    let mut names: Vec<String> = found
        .into_iter()
        .map(|entry| match listed {
            Listed::Host => entry.key.host.into(),
            Listed::Service => entry.key.service.into(),
            Listed::Metric => entry.key.metric.into(),
            Listed::Whole => entry.key.to_string(),
        })
        .collect();
    names.sort();
    names.dedup();
    let total = names.len();
    let list: Vec<String> = match rows {
        None => names,
        Some(rows) => names
            .into_iter()
            .skip(rows.saturating_mul(page - 1))
            .take(rows)
            .collect(),
    };
    let mut answer = json!({
        "list": list,
        "rows": list.len().to_string(),
        "total": total.to_string(),
    });
    if !missing.is_empty() {
        answer["partial"] = json!(true);
        answer["missing"] = json!(missing);
    }
    Ok(Json(answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_opsview_writes_them() {
        assert_eq!(parse_duration("3145h"), Ok(3145 * 3600));
        assert_eq!(parse_duration("131d1h"), Ok(131 * 86_400 + 3600));
        assert_eq!(
            parse_duration("18w5d1h"),
            Ok(18 * 7 * 86_400 + 5 * 86_400 + 3600)
        );
        assert_eq!(parse_duration("1d"), Ok(86_400));
        assert_eq!(parse_duration("90m"), Ok(90 * 60));
        assert_eq!(parse_duration("15minutes"), Ok(15 * 60));
        assert_eq!(parse_duration("2months"), Ok(2 * 30 * 86_400));
        assert_eq!(parse_duration("1months2w"), Ok(30 * 86_400 + 14 * 86_400));
        assert_eq!(parse_duration("0h"), Ok(0));
    }

    #[test]
    fn bad_durations_name_what_and_where() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(
            parse_duration("12"),
            Err(DurationError::NoUnit {
                text: "12".into(),
                at: 0
            })
        );
        assert_eq!(
            parse_duration("1d2"),
            Err(DurationError::NoUnit {
                text: "1d2".into(),
                at: 2
            })
        );
        assert_eq!(
            parse_duration("h"),
            Err(DurationError::NoNumber {
                text: "h".into(),
                at: 0
            })
        );
        assert_eq!(
            parse_duration("3y"),
            Err(DurationError::UnknownUnit {
                text: "3y".into(),
                unit: "y".into(),
                at: 1
            })
        );
        assert_eq!(
            parse_duration("1d 2h"),
            Err(DurationError::NoNumber {
                text: "1d 2h".into(),
                at: 2
            })
        );
        assert_eq!(
            parse_duration("-1d"),
            Err(DurationError::NoNumber {
                text: "-1d".into(),
                at: 0
            })
        );
        assert!(matches!(
            parse_duration("99999999999999999999w"),
            Err(DurationError::Overflow { .. })
        ));
        assert!(matches!(
            parse_duration("9999999999999999w"),
            Err(DurationError::Overflow { .. })
        ));
        let message = parse_duration("5x").unwrap_err().to_string();
        assert!(
            message.contains("\"x\"") && message.contains("byte 1"),
            "{message}"
        );
    }

    #[test]
    fn wildcards_match_runs() {
        assert!(wildcard_match("*", "", '*'));
        assert!(wildcard_match("web-*", "web-01", '*'));
        assert!(!wildcard_match("web-*", "db-01", '*'));
        assert!(wildcard_match("*-01", "web-01", '*'));
        assert!(wildcard_match("w*b*1", "web-01", '*'));
        assert!(!wildcard_match("w*b*2", "web-01", '*'));
        assert!(wildcard_match("a*a*a", "aaaa", '*'));
        assert!(!wildcard_match("a*a*a", "aa", '*'));
        assert!(wildcard_match("exact", "exact", '*'));
        assert!(!wildcard_match("exact", "exactly", '*'));
        assert!(!wildcard_match("Web", "web", '*'));
        assert!(wildcard_match("%ping%", "PINGping", '%'));
        assert!(wildcard_match("é*", "été", '*'));
    }

    #[test]
    fn description_has_three_decimals() {
        assert_eq!(
            description(&[505.0, 517.0, 511.0]),
            "Min: 505.000<br />Max: 517.000<br />Average: 511.000"
        );
        assert_eq!(
            description(&[0.1, 0.2]),
            "Min: 0.100<br />Max: 0.200<br />Average: 0.150"
        );
        assert_eq!(description(&[]), "Min: nan<br />Max: nan<br />Average: nan");
    }
}
