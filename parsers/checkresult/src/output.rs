//! The split of raw plugin output into text and perfdata, as Nagios core (and Naemon, Icinga)
//! does it.
//!
//! Line 1 up to its first `|` is the short output (trimmed); after that `|` is perfdata. Later
//! lines are long output up to the first `|` found in them; everything after that `|`, across
//! all remaining lines, is perfdata too. Perfdata pieces are trimmed and joined with one space,
//! so a multi-line perfdata block reads as one perfdata string.

use std::borrow::Cow;

/// Plugin output split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginOutput<'a> {
    /// The first line's text, trimmed; `None` for empty output.
    pub short_output: Option<&'a str>,
    /// Lines after the first, up to the `|` that starts long perfdata; `None` when empty.
    pub long_output: Option<&'a str>,
    /// All perfdata, pieces joined with single spaces; empty when there is none.
    pub perfdata: Cow<'a, str>,
}

/// Splits raw plugin output.
pub fn split(raw: &str) -> PluginOutput<'_> {
    if raw.is_empty() {
        return PluginOutput {
            short_output: None,
            long_output: None,
            perfdata: Cow::Borrowed(""),
        };
    }
    let (first_line, rest) = match raw.split_once('\n') {
        Some((first, rest)) => (first, Some(rest)),
        None => (raw, None),
    };
    let (short_output, first_perfdata) = match first_line.split_once('|') {
        Some((text, perfdata)) => (text, Some(perfdata)),
        None => (first_line, None),
    };
    let (long_output, long_perfdata) = match rest.map(|rest| rest.split_once('|')) {
        Some(Some((text, perfdata))) => (Some(text), Some(perfdata)),
        Some(None) => (rest, None),
        None => (None, None),
    };

    let mut pieces = first_perfdata
        .into_iter()
        .chain(
            long_perfdata
                .into_iter()
                .flat_map(|block| block.split('\n')),
        )
        .map(str::trim)
        .filter(|piece| !piece.is_empty());
    let perfdata = match (pieces.next(), pieces.next()) {
        (None, _) => Cow::Borrowed(""),
        (Some(only), None) => Cow::Borrowed(only),
        (Some(first), Some(second)) => {
            let mut joined = format!("{first} {second}");
            for piece in pieces {
                joined.push(' ');
                joined.push_str(piece);
            }
            Cow::Owned(joined)
        }
    };
    PluginOutput {
        short_output: Some(short_output.trim()),
        long_output: long_output.filter(|text| !text.is_empty()),
        perfdata,
    }
}
