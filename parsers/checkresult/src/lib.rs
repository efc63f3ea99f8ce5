//! Reads check-result envelopes: the records a monitoring master hands over, each naming a host,
//! usually a service, a time and a perfdata string.
//!
//! Formats, each in its own module and each readable as its specification:
//!
//! - [`json`]: `{"results":[{"host","service","timestamp","perfdata"[,"state","output"]}]}` and
//!   NDJSON, one such object a line;
//! - [`spool`]: spool-file lines, Opsview's `lastcheck||host||service||output||perfdata` and
//!   Nagios/Naemon/Icinga/PNP's tab-separated `KEY::VALUE` lines (service and host perfdata);
//! - [`output`]: the split of raw plugin output into text and perfdata, as Nagios core does it.
//!
//! Guarantees: a malformed record yields an [`EnvelopeError`] naming its record (line or result
//! index) and field, and reading goes on with the next record; strings are borrowed from the
//! input wherever no unescaping is needed. The perfdata string itself is not read here: that is
//! `perfpipe-perfdata`'s job, so each crate owns one grammar.

pub mod json;
pub mod output;
pub mod spool;

use std::borrow::Cow;
use std::fmt;

/// One check result: which check, when, and its performance data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult<'a> {
    /// The host the check ran for; never empty.
    pub host: Cow<'a, str>,
    /// The service; `None` for a host check's perfdata.
    pub service: Option<Cow<'a, str>>,
    /// When the check ran, in whole seconds since the Unix epoch (fractions are cut).
    pub timestamp: i64,
    /// The perfdata string, unread (possibly empty).
    pub perfdata: Cow<'a, str>,
    /// The check's state as a plugin return code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
    /// (for hosts: 0 UP, 1 DOWN, 2 UNREACHABLE), when the envelope carries it.
    pub state: Option<u8>,
    /// The plugin's text output, when the envelope carries it.
    pub output: Option<Cow<'a, str>>,
}

/// Where in the input a malformed record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// The input as a whole (a JSON body that is not an object with a `results` array).
    Body,
    /// The 0-based index of a result in a JSON `results` array.
    Result(usize),
    /// The 1-based line number in a line-oriented input (NDJSON, spool files).
    Line(usize),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Body => f.write_str("body"),
            Location::Result(index) => write!(f, "result {index}"),
            Location::Line(number) => write!(f, "line {number}"),
        }
    }
}

/// A record that could not be read: where, which field, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct EnvelopeError {
    /// The record.
    pub location: Location,
    /// The field that was wrong, in the format's own name (`timestamp`, `TIMET`, `lastcheck`),
    /// when one field is to blame.
    pub field: Option<String>,
    /// What was wrong.
    pub message: String,
}

impl EnvelopeError {
    fn new(location: Location, field: Option<&str>, message: impl Into<String>) -> Self {
        EnvelopeError {
            location,
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{}, field {field}: {}", self.location, self.message),
            None => write!(f, "{}: {}", self.location, self.message),
        }
    }
}

/// One record read from a line-oriented input: the result, or why the line was refused.
pub type RecordResult<'a> = Result<CheckResult<'a>, EnvelopeError>;

/// Reads the lines of `text` with `read_line`, skipping blank lines, numbering lines from 1.
fn read_lines<'a, F>(text: &'a str, mut read_line: F) -> impl Iterator<Item = RecordResult<'a>>
where
    F: FnMut(&'a str, Location) -> RecordResult<'a>,
{
    text.lines().enumerate().filter_map(move |(index, line)| {
        let line = line.trim_end_matches('\r');
        (!line.trim().is_empty()).then(|| read_line(line, Location::Line(index + 1)))
    })
}
