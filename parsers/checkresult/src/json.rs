//! JSON check results: a body `{"results":[…]}` and NDJSON (one result object a line).
//!
//! A result is `{"host": str, "service": str|null, "timestamp": number, "perfdata": str,
//! "state": 0..=3 (optional), "output": str (optional)}`. `service` absent or `null` marks host
//! perfdata; `timestamp` is seconds since the epoch, an integer or a float whose fraction is cut.
//! Unknown keys are refused, so a misspelt `perfdata` is an error instead of a silent loss.
//!
//! Each result of a body is decoded on its own, so one bad result is reported with its index and
//! the others are kept; the error names the field at fault.

use std::borrow::Cow;

use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{read_lines, CheckResult, EnvelopeError, Location, RecordResult};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonResult<'a> {
    #[serde(borrow)]
    host: Cow<'a, str>,
    #[serde(borrow, default)]
    service: Option<Cow<'a, str>>,
    #[serde(deserialize_with = "timestamp_seconds")]
    timestamp: i64,
    #[serde(borrow)]
    perfdata: Cow<'a, str>,
    #[serde(default, deserialize_with = "plugin_state")]
    state: Option<u8>,
    #[serde(borrow, default)]
    output: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    results: Vec<&'a RawValue>,
}

/// Reads a `{"results":[…]}` body. The outer error is for a body that is not such an object;
/// each element of the vector is one result or the error that refused it.
pub fn read_body(body: &str) -> Result<Vec<RecordResult<'_>>, EnvelopeError> {
    let body: Body<'_> = serde_json::from_str(body).map_err(|error| {
        EnvelopeError::new(
            Location::Body,
            None,
            format!("expected {{\"results\": [...]}}: {error}"),
        )
    })?;
    Ok(body
        .results
        .into_iter()
        .enumerate()
        .map(|(index, raw)| read_result(raw.get(), Location::Result(index)))
        .collect())
}

/// Reads NDJSON: one result object a line; blank lines are skipped.
pub fn read_ndjson(text: &str) -> impl Iterator<Item = RecordResult<'_>> {
    read_lines(text, read_result)
}

/// Reads one result object.
pub fn read_result(text: &str, location: Location) -> RecordResult<'_> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let result: JsonResult<'_> =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
            let path = error.path().to_string();
            // `.` is the object itself and `?` a position serde could not name (cut-off input).
            let field = (path != "." && !path.contains('?')).then_some(path);
            EnvelopeError {
                location,
                field,
                message: error.into_inner().to_string(),
            }
        })?;
    deserializer
        .end()
        .map_err(|error| EnvelopeError::new(location, None, error.to_string()))?;
    if result.host.is_empty() {
        return Err(EnvelopeError::new(location, Some("host"), "host is empty"));
    }
    if result.service.as_deref() == Some("") {
        return Err(EnvelopeError::new(
            location,
            Some("service"),
            "service is empty (leave it out or null for host perfdata)",
        ));
    }
    Ok(CheckResult {
        host: result.host,
        service: result.service,
        timestamp: result.timestamp,
        perfdata: result.perfdata,
        state: result.state,
        output: result.output,
    })
}

fn timestamp_seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let seconds = f64::deserialize(deserializer)?;
    // `i64::MAX as f64` rounds up to 2^63, so the bound is exclusive.
    if !(0.0..i64::MAX as f64).contains(&seconds) {
        return Err(de::Error::custom(format!(
            "timestamp {seconds} is not a time in seconds since 1970"
        )));
    }
    Ok(seconds as i64)
}

fn plugin_state<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u8>, D::Error> {
    match Option::<u64>::deserialize(deserializer)? {
        Some(state @ 0..=3) => Ok(Some(state as u8)),
        Some(other) => Err(de::Error::custom(format!(
            "state {other} is not a plugin return code 0..3"
        ))),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        let result = read_result(
            r#"{"host":"h1","service":"CPU \"load\"","timestamp":1,"perfdata":"a=1"}"#,
            Location::Line(1),
        )
        .unwrap();
        assert!(matches!(result.host, Cow::Borrowed("h1")));
        assert_eq!(result.service.as_deref(), Some("CPU \"load\""));
    }
}
