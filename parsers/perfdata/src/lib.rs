//! Reads Nagios plugin performance data (`rta=0.3ms;100;500;0 pl=0%;20;60`) into metrics,
//! exactly as perfpipe's normative reading (`READING.md`) defines it.
//!
//! The reader is a single left-to-right pass over the bytes of one perfdata string. It never
//! allocates except for a quoted label that contains the `''` escape; every other label, unit
//! and threshold is a slice of the input. It never panics, and every error it reports carries the
//! byte offset where its metric started (always a `char` boundary inside the input), so a bad
//! metric is reported and skipped while the metrics around it are kept. The rules that stop
//! reading (an unterminated quoted label, text without `=`) end the iteration after their error.
//!
//! No parser-combinator library is used: every delimiter of the grammar is a single ASCII byte,
//! so a hand-written scanner with `memchr` reads it in one pass, which is what the throughput
//! target of the project (hundreds of MB/s on one core) needs.
//!
//! ```
//! let read = perfpipe_perfdata::read("rta=0.3ms;100;500;0 pl=x");
//! assert_eq!(read.metrics[0].label, "rta");
//! assert_eq!(read.metrics[0].value, Some(0.3));
//! assert_eq!(read.metrics[0].uom, "ms");
//! assert_eq!(read.errors[0].offset, 20);
//! assert_eq!(read.errors[0].to_string(), "value is not a number at byte 20");
//! ```

mod json;
pub mod number;
mod range;
mod swar;

use std::borrow::Cow;

pub use range::Range;

/// One metric of a perfdata string.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric<'a> {
    /// The label as read: `''` in a quoted label becomes `'`; nothing else is changed.
    pub label: Cow<'a, str>,
    /// The value; `None` when the plugin printed `U` (unknown).
    pub value: Option<f64>,
    /// The unit, verbatim (`ms`, `%`, `B`, `c`, `27196b/s`…); empty when there is none.
    pub uom: &'a str,
    /// The warning threshold; `None` when its field is empty or absent.
    pub warn: Option<Threshold<'a>>,
    /// The critical threshold; `None` when its field is empty or absent.
    pub crit: Option<Threshold<'a>>,
    /// The minimum, when its field is a number.
    pub min: Option<f64>,
    /// The maximum, when its field is a number.
    pub max: Option<f64>,
    /// Byte offset where the metric starts in the input.
    pub offset: usize,
}

/// A warning or critical field: the raw text and its reading as a Nagios range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold<'a> {
    /// The field exactly as the plugin printed it.
    pub raw: &'a str,
    /// The range, or `None` when the text is not a valid range (the metric is kept).
    pub range: Option<Range>,
}

impl<'a> Threshold<'a> {
    fn read(raw: &'a str) -> Option<Threshold<'a>> {
        (!raw.is_empty()).then(|| Threshold {
            raw,
            range: Range::parse(raw),
        })
    }
}

/// Why a metric was skipped or reading stopped. The messages are the reading's own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// A label opened with `'` has no closing `'=`; reading stops.
    #[error("unterminated quoted label")]
    UnterminatedQuotedLabel,
    /// Text that is not followed by `=`; reading stops (or restarts at a quoted label).
    #[error("text without '='")]
    TextWithoutEquals,
    /// `=` with nothing before it, or `''=`.
    #[error("empty label")]
    EmptyLabel,
    /// The value field does not start with a number or `U`.
    #[error("value is not a number")]
    ValueNotANumber,
    /// The value is a number too large for a 64-bit float.
    #[error("value out of range")]
    ValueOutOfRange,
    /// The text after the number contains `=`, a sign of a missing space between two metrics.
    #[error("unit contains '='")]
    UnitContainsEquals,
}

/// A metric that could not be read, and where it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at byte {offset}")]
pub struct ParseError {
    /// Byte offset of the metric's start in the input.
    pub offset: usize,
    /// What was wrong.
    pub kind: ErrorKind,
}

/// Everything read from one perfdata string.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Perfdata<'a> {
    /// The metrics that were read, in input order.
    pub metrics: Vec<Metric<'a>>,
    /// The metrics that were skipped, in input order.
    pub errors: Vec<ParseError>,
}

/// Reads a whole perfdata string, collecting metrics and errors.
pub fn read(input: &str) -> Perfdata<'_> {
    let mut read = Perfdata::default();
    for item in Reader::new(input) {
        match item {
            Ok(metric) => read.metrics.push(metric),
            Err(error) => read.errors.push(error),
        }
    }
    read
}

/// An iterator over the metrics of one perfdata string, yielding each metric or the error that
/// made the reader skip it, in input order. Allocation-free unless a label needs unescaping.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    input: &'a str,
    pos: usize,
    stopped: bool,
}

/// What a byte means inside a value text; see [`BYTE_CLASS`].
const ORDINARY: u8 = 0;
const WHITESPACE: u8 = 1;
const SEMICOLON: u8 = 2;
const EQUALS: u8 = 3;
const QUOTE: u8 = 4;

/// Byte classes for the label and value-text scans, one table load per byte instead of a chain
/// of comparisons (these scans are the reader's hottest loops). Whitespace is the reading's:
/// ASCII space, `\t`, `\n`, `\v`, `\f`, `\r`.
static BYTE_CLASS: [u8; 256] = {
    let mut table = [ORDINARY; 256];
    table[b' ' as usize] = WHITESPACE;
    table[b'\t' as usize] = WHITESPACE;
    table[b'\n' as usize] = WHITESPACE;
    table[0x0b] = WHITESPACE;
    table[0x0c] = WHITESPACE;
    table[b'\r' as usize] = WHITESPACE;
    table[b';' as usize] = SEMICOLON;
    table[b'=' as usize] = EQUALS;
    table[b'\'' as usize] = QUOTE;
    table
};

#[inline]
fn is_whitespace(byte: u8) -> bool {
    BYTE_CLASS[usize::from(byte)] == WHITESPACE
}

impl<'a> Reader<'a> {
    /// A reader at the start of `input`.
    pub fn new(input: &'a str) -> Self {
        Reader {
            input,
            pos: 0,
            stopped: false,
        }
    }

    fn stop(&mut self, offset: usize, kind: ErrorKind) -> Option<Result<Metric<'a>, ParseError>> {
        self.stopped = true;
        Some(Err(ParseError { offset, kind }))
    }

    /// Reads a quoted label whose opening `'` is at `start`. Returns the label and the offset
    /// of the value text (just after `'=`), or `None` when there is no closing `'=`.
    fn quoted_label(&self, start: usize) -> Option<(Cow<'a, str>, usize)> {
        let bytes = self.input.as_bytes();
        let content_start = start + 1;
        let mut search_from = content_start;
        let mut escaped = false;
        loop {
            let quote = search_from + memchr::memchr(b'\'', &bytes[search_from..])?;
            match bytes.get(quote + 1) {
                Some(b'=') => {
                    let raw = &self.input[content_start..quote];
                    // Left-to-right replacement pairs quotes exactly as the scan above did,
                    // because a `'=` inside the raw label would have ended it earlier.
                    let label = if escaped {
                        Cow::Owned(raw.replace("''", "'"))
                    } else {
                        Cow::Borrowed(raw)
                    };
                    return Some((label, quote + 2));
                }
                Some(b'\'') => {
                    escaped = true;
                    search_from = quote + 2;
                }
                _ => search_from = quote + 1, // a lone quote is literal
            }
        }
    }

    /// Reads the value text starting at `value_start` into a metric. Returns the metric (or
    /// why it was skipped) and where the value text ends.
    ///
    /// One pass finds both the end of the value text (the next whitespace) and the `;` that
    /// separate its fields `value[uom];warn;crit;min;max`; fields after the fifth are ignored.
    fn metric(
        &self,
        label: Cow<'a, str>,
        offset: usize,
        value_start: usize,
    ) -> (Result<Metric<'a>, ParseError>, usize) {
        let bytes = self.input.as_bytes();
        let mut separators = [0usize; 5];
        let mut separator_count = 0;
        let mut note = |class: u8, at: usize| -> bool {
            if class == WHITESPACE {
                return true;
            }
            if class == SEMICOLON && separator_count < separators.len() {
                separators[separator_count] = at;
                separator_count += 1;
            }
            false
        };
        let mut value_end = value_start;
        // Eight bytes at a time while they last: only bytes that may be whitespace or `;` are
        // looked at one by one.
        'words: while let Some(chunk) = bytes.get(value_end..value_end + 8) {
            let word = u64::from_le_bytes(chunk.try_into().expect("an 8-byte slice"));
            let mut candidates = swar::whitespace_or_semicolon(word);
            while candidates != 0 {
                let at = value_end + swar::first_byte(candidates);
                if note(BYTE_CLASS[usize::from(bytes[at])], at) {
                    value_end = at;
                    break 'words;
                }
                candidates &= candidates - 1;
            }
            value_end += 8;
        }
        if value_end + 8 > bytes.len() {
            while value_end < bytes.len() {
                let class = BYTE_CLASS[usize::from(bytes[value_end])];
                if class != ORDINARY && note(class, value_end) {
                    break;
                }
                value_end += 1;
            }
        }
        // Field `i` runs from after separator `i - 1` to separator `i` (or the end).
        let field = |i: usize| -> Option<&'a str> {
            if i > separator_count {
                return None;
            }
            let start = if i == 0 {
                value_start
            } else {
                separators[i - 1] + 1
            };
            let end = if i < separator_count {
                separators[i]
            } else {
                value_end
            };
            Some(&self.input[start..end])
        };
        (self.fields(label, offset, field), value_end)
    }

    fn fields(
        &self,
        label: Cow<'a, str>,
        offset: usize,
        field: impl Fn(usize) -> Option<&'a str>,
    ) -> Result<Metric<'a>, ParseError> {
        let error = |kind| ParseError { offset, kind };
        if label.is_empty() {
            return Err(error(ErrorKind::EmptyLabel));
        }
        let first = field(0).unwrap_or_default();
        let (value, uom) = if let Some(unit) = first.strip_prefix('U') {
            (None, unit)
        } else {
            let (value, len) =
                number::scan(first.as_bytes()).ok_or(error(ErrorKind::ValueNotANumber))?;
            if value.is_infinite() {
                return Err(error(ErrorKind::ValueOutOfRange));
            }
            (Some(value), &first[len..])
        };
        if uom.as_bytes().contains(&b'=') {
            return Err(error(ErrorKind::UnitContainsEquals));
        }
        let number = |i| field(i).and_then(|text: &str| number::parse_whole(text.as_bytes()));
        Ok(Metric {
            label,
            value,
            uom,
            warn: field(1).and_then(Threshold::read),
            crit: field(2).and_then(Threshold::read),
            min: number(3),
            max: number(4),
            offset,
        })
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<Metric<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.stopped {
            return None;
        }
        let bytes = self.input.as_bytes();
        while self.pos < bytes.len() && is_whitespace(bytes[self.pos]) {
            self.pos += 1;
        }
        let start = self.pos;
        if start >= bytes.len() {
            self.stopped = true;
            return None;
        }

        let (label, value_start) = if bytes[start] == b'\'' {
            match self.quoted_label(start) {
                Some(found) => found,
                None => return self.stop(start, ErrorKind::UnterminatedQuotedLabel),
            }
        } else {
            // The label runs to the next `=`. A quote that begins a word before it starts a
            // quoted label: the text before that quote is garbage, reported, and reading
            // restarts at the quote. Both are found in one pass; `bytes[start]` is not a quote.
            let mut equals = start;
            let mut word_quote = None;
            loop {
                let Some(&byte) = bytes.get(equals) else {
                    return self.stop(start, ErrorKind::TextWithoutEquals);
                };
                match BYTE_CLASS[usize::from(byte)] {
                    EQUALS => break,
                    QUOTE if word_quote.is_none() && is_whitespace(bytes[equals - 1]) => {
                        word_quote = Some(equals);
                    }
                    _ => {}
                }
                equals += 1;
            }
            if let Some(quote) = word_quote {
                self.pos = quote;
                return Some(Err(ParseError {
                    offset: start,
                    kind: ErrorKind::TextWithoutEquals,
                }));
            }
            (Cow::Borrowed(&self.input[start..equals]), equals + 1)
        };

        let (metric, value_end) = self.metric(label, start, value_start);
        self.pos = value_end;
        Some(metric)
    }
}

impl std::iter::FusedIterator for Reader<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_quoted_and_unquoted() {
        let read = read("'it''s'=1 a used=2 'a=b'=3 '''x'=4");
        let labels: Vec<_> = read.metrics.iter().map(|m| m.label.as_ref()).collect();
        assert_eq!(labels, ["it's", "a used", "a=b", "'x"]);
        assert!(matches!(read.metrics[1].label, Cow::Borrowed(_)));
        assert!(read.errors.is_empty());
    }

    #[test]
    fn garbage_before_a_quoted_label_is_reported_and_reading_goes_on() {
        let read = read("junk here 'b c'=2");
        assert_eq!(read.metrics[0].label, "b c");
        assert_eq!(
            read.errors,
            [ParseError {
                offset: 0,
                kind: ErrorKind::TextWithoutEquals
            }]
        );
    }

    #[test]
    fn stops_are_final() {
        let mut reader = Reader::new("a=1 'b=2");
        assert!(reader.next().unwrap().is_ok());
        assert_eq!(
            reader.next().unwrap().unwrap_err().kind,
            ErrorKind::UnterminatedQuotedLabel
        );
        assert!(reader.next().is_none());
        assert!(reader.next().is_none());
    }

    #[test]
    fn thresholds_keep_raw_text_and_range() {
        let read = read("a=1;~:4;@0:6;0;x");
        let metric = &read.metrics[0];
        assert_eq!(metric.warn.unwrap().raw, "~:4");
        assert_eq!(metric.warn.unwrap().range.unwrap().start, f64::NEG_INFINITY);
        assert!(metric.crit.unwrap().range.unwrap().inside);
        assert_eq!((metric.min, metric.max), (Some(0.0), None));
    }
}
